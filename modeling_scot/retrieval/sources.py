"""Where gallery images come from: image files, a `datasets` image column, or the built-in world.

A source names its images (`ids`), decodes one on request (`image(index)`, in DataLoader workers) and
gives a `content_key()` that changes whenever its images may have changed (it keys the embedding cache).
Sources hold paths, rows or scenes, never decoded images, so large galleries stream.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ..processing_scot import load_image
from ..world import build_benchmark, render_scene, scene_from_id, scene_id
from .store import listed


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image files; missing paths are listed in one error."""
    missing = [os.fspath(p) for p in paths if not Path(p).exists()]
    if missing:
        shown = ", ".join(missing[:5])
        raise FileNotFoundError(f"{len(missing)} image path(s) do not exist: {shown}{' ...' if len(missing) > 5 else ''}")
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {[os.fspath(p) for p in paths]}")
    return files


class GallerySource(Protocol):
    """Gallery images: `ids[i]` names the image returned by `image(i)`."""

    ids: list[str]

    def image(self, index: int) -> Image.Image: ...

    def content_key(self) -> str: ...


class ImageFiles:
    """Image files; ids default to the paths as given. `root` is set when every id is a path relative to it."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        ids: Sequence[str] | None = None,
        root: str | os.PathLike | None = None,
    ):
        self.paths = [os.fspath(path) for path in paths]
        self.ids = list(self.paths if ids is None else ids)
        self.root = None if root is None else Path(root)
        if len(self.ids) != len(self.paths):
            raise ValueError(f"got {len(self.ids)} ids for {len(self.paths)} image paths")

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ImageFiles:
        """Every image file under `folder` (recursively, sorted); ids are paths relative to `folder`."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"gallery folder {str(folder)!r} does not exist or is not a folder")
        files = image_files([str(folder)])
        return cls(files, [file.relative_to(folder).as_posix() for file in files], root=folder)

    def describe(self) -> dict | None:
        """`{"kind": "folder", "root": <absolute folder>}` when the ids are paths under `root`, else None."""
        return None if self.root is None else {"kind": "folder", "root": str(self.root.resolve())}

    def image(self, index: int) -> Image.Image:
        return load_image(self.paths[index], f"gallery image {self.ids[index]!r}")

    def content_key(self) -> str:
        """Paths, sizes and modification times; raises FileNotFoundError listing missing files."""
        stats, missing = [], []
        for path in self.paths:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                missing.append(path)
                continue
            stats.append((path, stat.st_size, stat.st_mtime_ns))
        if missing:
            raise FileNotFoundError(f"{len(missing)} gallery image file(s) do not exist: {listed(missing)}")
        return json.dumps(stats)


class DatasetImages:
    """The images of a `datasets.Dataset` column (an `Image` feature, paths or arrays); ids from `id_column`
    (default: `row-<index>`). An `Image` column is read undecoded and decoded by `load_image`, so its pixel
    limit and error messages apply to dataset images too."""

    def __init__(self, dataset: Dataset, image_column: str = "image", id_column: str | None = None):
        for column in (image_column, id_column):
            if column is not None and column not in dataset.column_names:
                raise ValueError(f"the dataset has no column {column!r}; it has {dataset.column_names}")
        images = dataset.select_columns([image_column])
        self.fingerprint = images._fingerprint
        if isinstance(images.features[image_column], ImageFeature):
            images = images.cast_column(image_column, ImageFeature(decode=False))
        self.images = images
        self.image_column = image_column
        self.id_column = id_column
        if id_column is None:
            self.ids = [f"row-{i}" for i in range(len(dataset))]
        else:
            self.ids = [str(value) for value in dataset[id_column]]

    def image(self, index: int) -> Image.Image:
        value, name = self.images[index][self.image_column], f"gallery image {self.ids[index]!r}"
        if isinstance(value, dict) and set(value) == {"bytes", "path"}:  # an undecoded `Image` feature
            if value["bytes"] is not None:
                return load_image(io.BytesIO(value["bytes"]), name)
            if value["path"] is not None:
                return load_image(value["path"], name)
            raise ValueError(f"{name} has neither bytes nor a path in column {self.image_column!r}")
        return load_image(value, name)

    def content_key(self) -> str:
        return json.dumps([self.fingerprint, self.image_column, self.id_column])


class WorldGallery:
    """The gallery of the built-in world's benchmark for `seed`; ids are scene ids (stable, readable)."""

    def __init__(self, seed: int, num_queries: int = 1000, image_size: int = 64):
        self.seed, self.num_queries, self.image_size = seed, num_queries, image_size
        self.scenes = build_benchmark(seed, num_queries).gallery
        self.ids = [scene_id(scene) for scene in self.scenes]

    def image(self, index: int) -> Image.Image:
        return render_scene(self.scenes[index], self.image_size)

    def content_key(self) -> str:
        return json.dumps(["world", self.seed, self.num_queries, self.image_size])

    def describe(self) -> dict:
        """`{"kind": "world", ...}`: the ids name scenes, rendered at `image_size`."""
        return {"kind": "world", "seed": self.seed, "num_queries": self.num_queries, "image_size": self.image_size}


def gallery_image(source: dict, item: str) -> Image.Image:
    """The image of gallery id `item`, from a source described by `ImageFiles.describe` or `WorldGallery.describe`."""
    kind = source.get("kind")
    if kind == "world":
        return render_scene(scene_from_id(item), source["image_size"])
    if kind == "folder":
        return load_image(os.path.join(source["root"], item), f"gallery image {item!r}")
    raise ValueError(f"cannot show images of a gallery source of kind {kind!r}: it must be 'world' or 'folder'")


__all__ = ["IMAGE_SUFFIXES", "DatasetImages", "GallerySource", "ImageFiles", "WorldGallery", "gallery_image", "image_files"]
