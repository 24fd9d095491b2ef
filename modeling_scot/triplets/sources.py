"""Captioned images to write triplets for, and their images when a dataset is built.

Sources: a COCO-captions JSON, a CSV/TSV/JSONL table, a `datasets` dataset (a local folder or a Hub id)
or the built-in world. Each yields [`Caption`]s in a fixed order and describes itself with a JSON-ready
`spec`, which a resumed run compares and a dataset build uses to find the images again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Image
from PIL import Image as PILImage

from ..datasets_io import open_dataset
from ..world import caption, derived_rng, is_test_scene, render_scene, sample_scene, scene_from_id, scene_id
from .backend import CaptionRequest
from .validation import is_unicode

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}
WORLD = "world"
WORLD_DRAWS = 10000


@dataclass(frozen=True)
class Caption:
    """One captioned image: `image` is a path, URL, world scene id or dataset row number (see the source)."""

    source_id: str
    image: str
    caption: str


class CaptionSource(ABC):
    """Captions in a fixed order."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """What identifies the source (JSON-ready); `kind` is one of world, coco, table, dataset."""

    @abstractmethod
    def __iter__(self) -> Iterator[Caption]:
        """The captions, in order."""

    @abstractmethod
    def count(self) -> int:
        """How many captions the source yields."""


def _file_spec(kind: str, path: Path) -> dict[str, Any]:
    return {"kind": kind, "path": str(path.resolve()), "size": path.stat().st_size}


class WorldCaptions(CaptionSource):
    """Paraphrased captions of `num_scenes` distinct random training scenes of the built-in world.

    The image and the source id are the scene id.
    """

    def __init__(self, num_scenes: int, seed: int = 0) -> None:
        if num_scenes < 1:
            raise ValueError(f"--num-scenes must be >= 1, got {num_scenes}")
        self.num_scenes = num_scenes
        self.seed = seed

    def spec(self) -> dict[str, Any]:
        return {"kind": WORLD, "num_scenes": self.num_scenes, "seed": self.seed}

    def __iter__(self) -> Iterator[Caption]:
        rng = derived_rng("world-captions", self.seed)
        drawn: set[str] = set()
        while len(drawn) < self.num_scenes:
            for _ in range(WORLD_DRAWS):
                scene = sample_scene(rng)
                identifier = scene_id(scene)
                if identifier not in drawn and not is_test_scene(scene):
                    break
            else:
                raise ValueError(f"found only {len(drawn)} distinct training scenes; lower --num-scenes")
            drawn.add(identifier)
            yield Caption(identifier, identifier, caption(scene, rng))

    def count(self) -> int:
        return self.num_scenes


def _field(entry: object, key: str, where: str, types: tuple[type, ...]) -> Any:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    if entry.get(key) is None:
        raise ValueError(f"{where} has no {key!r}")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(f"{where}.{key} is {type(value).__name__}, expected {' or '.join(t.__name__ for t in types)}")
    if isinstance(value, str) and not is_unicode(value):
        raise ValueError(f"{where}.{key} holds a lone surrogate (not valid Unicode)")
    return value


def _read_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from err


class CocoCaptions(CaptionSource):
    """A COCO-captions JSON (`images` with `id` and `file_name`, `annotations` with `image_id` and `caption`).

    The source id is the image id, the image its `file_name`; captions come in annotation order.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not UTF-8 text: {err}") from err
        data = _read_json(text, str(path))
        images = _field(data, "images", str(path), (list,))
        self.annotations = _field(data, "annotations", str(path), (list,))
        self.files = {}
        for index, image in enumerate(images):
            where = f"{path}: images[{index}]"
            self.files[str(_field(image, "id", where, (int, str)))] = _field(image, "file_name", where, (str,))
        for index, annotation in enumerate(self.annotations):
            where = f"{path}: annotations[{index}]"
            image_id = str(_field(annotation, "image_id", where, (int, str)))
            _field(annotation, "caption", where, (str,))
            if image_id not in self.files:
                raise ValueError(f"{where}.image_id {image_id} is not the id of any entry of images")

    def spec(self) -> dict[str, Any]:
        return _file_spec("coco", self.path)

    def __iter__(self) -> Iterator[Caption]:
        for annotation in self.annotations:
            image_id = str(annotation["image_id"])
            yield Caption(image_id, self.files[image_id], annotation["caption"].strip())

    def count(self) -> int:
        return len(self.annotations)


class TableCaptions(CaptionSource):
    """A CSV, TSV or JSONL table with an image column and a caption column (and optionally an id column).

    The source id is the id column's value, else the image's.
    """

    def __init__(self, path: Path, image_column: str, caption_column: str, id_column: str | None = None) -> None:
        self.path = path
        self.columns = {"image": image_column, "caption": caption_column, "id": id_column or image_column}
        self.delimiter = TABLE_SUFFIXES[path.suffix.lower()]
        if self.delimiter is not None:
            header = next((row for _, row in self._read(csv.reader)), [])
            missing = [name for name in self.columns.values() if name not in header]
            if missing:
                raise ValueError(f"{path} has no column {missing[0]!r} (its columns: {', '.join(header) or 'none'})")

    def spec(self) -> dict[str, Any]:
        return {**_file_spec("table", self.path), "columns": self.columns}

    def _read(self, reader_type: Callable) -> Iterator[tuple[str, Any]]:
        """(location, row) of the rows a csv reader of `reader_type` reads from the table."""
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = reader_type(handle, delimiter=self.delimiter)
            try:
                for row in reader:
                    yield f"{self.path}: line {reader.line_num}", row
            except UnicodeDecodeError as err:
                raise ValueError(f"{self.path} is not UTF-8 text (after line {reader.line_num}): {err}") from err
            except csv.Error as err:
                raise ValueError(f"{self.path}: line {reader.line_num}: {err}") from err

    def _rows(self) -> Iterator[tuple[str, Any]]:
        if self.delimiter is not None:
            yield from self._read(csv.DictReader)
            return
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                where = f"{self.path}: line {number}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{where} is not UTF-8 text: {err}") from err
                if line.strip():
                    yield where, _read_json(line, where)

    def __iter__(self) -> Iterator[Caption]:
        for where, row in self._rows():
            image, text, identifier = (_field(row, self.columns[key], where, (str, int)) for key in ("image", "caption", "id"))
            yield Caption(str(identifier), str(image), str(text).strip())

    def count(self) -> int:
        return sum(1 for _ in self._rows())


def _load_dataset(source: str, split: str) -> Dataset:
    try:
        dataset = open_dataset(source, split)
    except ValueError as err:
        raise ValueError(f"--captions {source!r} is neither a captions file nor a loadable dataset: {err}") from err
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"dataset {source!r} has no split {split!r} (its splits: {', '.join(dataset)})")
        dataset = dataset[split]
    return dataset


class DatasetCaptions(CaptionSource):
    """A `datasets` dataset: a `save_to_disk` folder, a folder `load_dataset` reads, or a Hub id.

    With an `Image` column the image is the row number (its bytes are read again when the dataset is built)
    and the source id is the id column's value, else the image file name, else the row number; with a
    string column the image is that string and the source id the id column's value, else the image.
    """

    def __init__(self, source: str, split: str, image_column: str, caption_column: str, id_column: str | None) -> None:
        self.source, self.split = source, split
        self.dataset = _load_dataset(source, split)
        self.columns = {"image": image_column, "caption": caption_column, "id": id_column}
        for name in filter(None, self.columns.values()):
            if name not in self.dataset.column_names:
                columns = ", ".join(self.dataset.column_names)
                raise ValueError(f"dataset {source!r} has no column {name!r} (its columns: {columns})")
        self.image_feature = isinstance(self.dataset.features[image_column], Image)
        if self.image_feature:
            self.dataset = self.dataset.cast_column(image_column, Image(decode=False))

    def spec(self) -> dict[str, Any]:
        source = str(Path(self.source).resolve()) if Path(self.source).exists() else self.source
        return {
            "kind": "dataset",
            "source": source,
            "split": self.split,
            "columns": self.columns,
            "image_feature": self.image_feature,
            "num_rows": len(self.dataset),
        }

    def _image(self, index: int, value: Any) -> tuple[str, str]:
        """(image, default source id) of row `index`."""
        if not self.image_feature:
            return str(value), str(value)
        path = value.get("path") if isinstance(value, dict) else None
        return str(index), os.path.basename(path) if path else str(index)

    def __iter__(self) -> Iterator[Caption]:
        names = [name for name in self.columns.values() if name]
        index = 0
        for batch in self.dataset.select_columns(names).iter(batch_size=1000):
            for offset in range(len(batch[self.columns["caption"]])):
                image, default_id = self._image(index, batch[self.columns["image"]][offset])
                identifier = batch[self.columns["id"]][offset] if self.columns["id"] else default_id
                yield Caption(str(identifier), image, str(batch[self.columns["caption"]][offset] or "").strip())
                index += 1

    def count(self) -> int:
        return len(self.dataset)

    def image_bytes(self, image: str) -> dict[str, Any]:
        """The stored `Image` value ({bytes, path}) of the row numbered `image`."""
        return self.dataset[int(image)][self.columns["image"]]


def open_captions(
    source: str,
    *,
    image_column: str = "image",
    caption_column: str = "caption",
    id_column: str | None = None,
    split: str = "train",
    num_scenes: int = 1000,
    seed: int = 0,
) -> CaptionSource:
    """The caption source named by `source`: `world`, a .json (COCO), .csv/.tsv/.jsonl file, a dataset folder or Hub id."""
    if source == WORLD:
        return WorldCaptions(num_scenes, seed)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".json" or suffix in TABLE_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"captions file not found: {source}")
        if suffix == ".json":
            return CocoCaptions(path)
        return TableCaptions(path, image_column, caption_column, id_column)
    if path.is_file():
        raise ValueError(f"captions file {source} has an unknown type; use .json (COCO), .csv, .tsv or .jsonl")
    return DatasetCaptions(source, split, image_column, caption_column, id_column)


def caption_requests(captions: Iterable[Caption], variants: int = 1) -> Iterator[CaptionRequest]:
    """`variants` requests per caption (variant 0, 1, ...), in order."""
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    for item in captions:
        for variant in range(variants):
            yield CaptionRequest(item.source_id, item.image, item.caption, variant)


ImageLookup = Callable[[str, str], dict[str, Any]]
"""Maps (source id, image) of a triplet to an `Image` feature value {"bytes", "path"}."""


def _local_file(root: Path | None) -> ImageLookup:
    """Reads image files: under `root` (never outside it) when given, else at the paths as given."""
    base = root.resolve() if root is not None else None

    def lookup(source_id: str, image: str) -> dict[str, Any]:
        path = root / image if root is not None else Path(image)
        if base is not None and not path.resolve().is_relative_to(base):
            raise ValueError(f"image of {source_id!r} is outside --images-root {root}: {image}")
        if not path.is_file():
            raise FileNotFoundError(f"image of {source_id!r} not found: {path}")
        data = path.read_bytes()
        try:
            with PILImage.open(io.BytesIO(data)):
                pass
        except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as err:
            raise ValueError(f"image of {source_id!r} is not an image file: {path} ({err})") from err
        return {"bytes": data, "path": path.name}

    return lookup


def _world_render(image_size: int) -> ImageLookup:
    @lru_cache(maxsize=64)
    def lookup(source_id: str, image: str) -> dict[str, Any]:
        return Image().encode_example(render_scene(scene_from_id(image), image_size))

    return lookup


def image_lookup(spec: dict[str, Any], first_image: str, images_root: Path | None, image_size: int = 64) -> ImageLookup | None:
    """How to store the images of the source described by `spec` in an `Image` column, or None to keep strings.

    World scenes are rendered from their id, `Image` rows of a dataset source are read again, and images are
    read as local files under `images_root`, or as given when `first_image` is an existing file; anything
    else (URLs, paths of another machine) stays a string.
    """
    if spec["kind"] == WORLD:
        return _world_render(image_size)
    if spec["kind"] == "dataset" and spec["image_feature"]:
        columns = spec["columns"]
        source = DatasetCaptions(spec["source"], spec["split"], columns["image"], columns["caption"], columns["id"])
        return lambda source_id, image: source.image_bytes(image)
    if images_root is not None:
        if not images_root.is_dir():
            raise FileNotFoundError(f"--images-root folder not found: {images_root}")
        return _local_file(images_root)
    return _local_file(None) if Path(first_image).is_file() else None


__all__ = [
    "Caption",
    "CaptionSource",
    "CocoCaptions",
    "DatasetCaptions",
    "ImageLookup",
    "TableCaptions",
    "WorldCaptions",
    "caption_requests",
    "image_lookup",
    "open_captions",
]
