"""Small file helpers: every write goes to a temporary file first and is renamed into place."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_output_path(path: str, option: str, folder: bool) -> Path:
    """`path` as an output of the kind `folder` says, refused before any work when a file or folder of the other
    kind is in the way (at `path` or as one of its parents)."""
    output = Path(path)
    if folder and output.exists() and not output.is_dir():
        raise ValueError(f"{option} {path!r} is a file; give a folder path")
    if not folder and output.is_dir():
        raise ValueError(f"{option} {path!r} is a folder; give a file path, e.g. {str(output / 'embeddings.safetensors')!r}")
    blocking = next((parent for parent in output.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{option} {path!r} lies under {str(blocking)!r}, which is a file, not a folder")
    return output


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a synced temporary file in the same folder, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: object) -> None:
    """Write `payload` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


@contextmanager
def replace_folder_atomic(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `path`; when the block succeeds, it replaces `path` by renames.

    A failure or kill inside the block leaves `path` as it was; no half-written folder is ever visible under
    its final name. Staging folders are named `.{name}.staging-{pid}` and `.{name}.replaced-{pid}`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging-{os.getpid()}")
    replaced = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, replaced)
    os.replace(staging, path)
    shutil.rmtree(replaced, ignore_errors=True)


__all__ = ["check_output_path", "replace_folder_atomic", "write_json", "write_text_atomic"]
