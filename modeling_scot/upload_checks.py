"""Checks of the files a push would upload: none empty, none half-written, weights and parquet files readable."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError, safe_open

PARTIAL_SUFFIXES = (".part", ".partial", ".incomplete", ".download", ".crdownload", "~")
"""Name endings of files that other tools leave while writing (the package's own `*.tmp` files are never listed)."""


def _check_readable(path: Path, name: str) -> None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            with safe_open(str(path), framework="numpy"):
                pass
        elif suffix == ".parquet":
            pq.read_metadata(path)
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (SafetensorError, pa.ArrowException, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        message = " ".join(str(err).split())
        raise ValueError(f"{name} in {path.parent} is not a readable {suffix[1:]} file (truncated?): {message}") from err


def check_upload_files(folder: Path, files: list[str]) -> None:
    """Raise ValueError unless every file of `files` (relative to `folder`) is complete: not empty, not named like
    a half-written file, and (safetensors, parquet, JSON) readable."""
    for name in files:
        path = folder / name
        if name.endswith(PARTIAL_SUFFIXES):
            raise ValueError(f"{folder} holds {name}, a half-written file: finish or remove it before uploading")
        if path.stat().st_size == 0:
            raise ValueError(f"{name} in {folder} is empty (0 bytes): write it again or remove it before uploading")
        _check_readable(path, name)


__all__ = ["PARTIAL_SUFFIXES", "check_upload_files"]
