"""Small file helpers: every write goes to a temporary file first and is renamed into place."""

from __future__ import annotations

import json
import os
from pathlib import Path


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


__all__ = ["write_json", "write_text_atomic"]
