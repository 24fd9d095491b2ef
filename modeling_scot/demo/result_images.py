"""The files the demo shows as results: each gallery image written once as a PNG into a folder of its own.

The page loads result images straight from that folder (a Gradio static path). A file there is only ever
created by renaming a finished file (staged in a sibling folder) and always with the same content, so a
request never reads a file that is being written; the folder holds nothing but these PNGs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ..retrieval.sources import gallery_image

SUFFIX = ".png"
STAGING = ".staging"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class ResultImages:
    """PNG copies of the gallery images of `source` (a gallery index's source), under `root`/<source digest>."""

    def __init__(self, source: dict, root: Path):
        self.source = source
        root = Path(root).resolve()
        self.folder, self._staging = root / _digest(json.dumps(source, sort_keys=True), 16), root / STAGING
        for folder in (self.folder, self._staging):
            folder.mkdir(parents=True, exist_ok=True)

    def _version(self, item: str) -> str:
        """What the file of `item` depends on beyond its id: a folder image's size and modification time."""
        if self.source.get("kind") != "folder":
            return ""
        stat = os.stat(os.path.join(self.source["root"], item))
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def path(self, item: str) -> Path:
        """The PNG of gallery id `item`, written first when missing (or when a folder image has changed)."""
        path = self.folder / f"{_digest(item + chr(0) + self._version(item), 40)}{SUFFIX}"
        if not path.is_file():
            handle, staging = tempfile.mkstemp(dir=self._staging, suffix=SUFFIX)
            try:
                with os.fdopen(handle, "wb") as file:
                    gallery_image(self.source, item).save(file, format="PNG")
                os.replace(staging, path)
            except BaseException:
                Path(staging).unlink(missing_ok=True)
                raise
        return path


__all__ = ["ResultImages"]
