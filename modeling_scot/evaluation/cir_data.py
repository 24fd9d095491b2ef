"""Benchmark splits for composed image retrieval, shared by the CIRR, FashionIQ, CIRCO and GeneCIS loaders.

A [`CIRSplit`] holds the queries (reference image id + modification text, and the answers where the
split has them), the gallery the queries are ranked against and where every image lives. Scores are
always a (queries, gallery) matrix whose columns follow `CIRSplit.gallery`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image

from ..json_files import Entry

GENECIS_DILATION = 0.7

Box = tuple[float, float, float, float]


class MissingImagesError(FileNotFoundError):
    """Image files of a split that are not on disk."""


@dataclass(frozen=True)
class CIRQuery:
    """One composed query.

    Attributes:
        query_id: the benchmark's id (CIRR pairid, CIRCO id); FashionIQ and GeneCIS have none, so
            "<category or task>-<index in the file>".
        reference: reference image id.
        text: the modification text to encode.
        target: the annotated target image id; None where the split has no targets.
        positives: every correct image id (CIRCO's gt_img_ids; otherwise the target alone; empty without targets).
        captions: the raw caption strings of the file (FashionIQ has two per query).
        subset: CIRR's img_set members, the reference included as in the file.
        gallery: the query's own gallery (GeneCIS), target first.
        shared_concept: CIRCO's shared concept between reference and target.
        target_caption: the true caption of the target, where the benchmark knows it (the built-in world): the
            text an oracle query embeds.
        edit_type: the kind of modification, where the benchmark labels it (the built-in world), for per-type recall.
    """

    query_id: str
    reference: str
    text: str
    target: str | None
    positives: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    subset: tuple[str, ...] | None = None
    gallery: tuple[str, ...] | None = None
    shared_concept: str | None = None
    target_caption: str | None = None
    edit_type: str | None = None


@dataclass(frozen=True)
class CIRSplit:
    """A benchmark split ready to embed and score.

    Attributes:
        benchmark: "cirr", "fashioniq", "circo", "genecis" or "world".
        split: the split name (GeneCIS: the task).
        queries: the queries in file order.
        gallery: image ids scored for every query, in the order of the score matrix columns.
        image_paths: file of every image id (gallery and references).
        remove_reference: whether the protocol drops each query's reference image from its ranking.
        has_targets: whether the split's targets are public.
        annotation_file: the file the queries come from.
        category: FashionIQ's category; None elsewhere.
        crop_boxes: (x, y, width, height) of the instance to crop, per image id (GeneCIS attribute tasks).
        renderer: makes the image of an id in memory, for a benchmark without image files (the built-in world);
            `image_paths` is then empty.
        renderer_key: what identifies the renderer's images (it keys the embedding cache).
        seed: the built-in world's seed; None elsewhere.
    """

    benchmark: str
    split: str
    queries: list[CIRQuery]
    gallery: tuple[str, ...]
    image_paths: Mapping[str, Path]
    remove_reference: bool
    has_targets: bool
    annotation_file: Path
    category: str | None = None
    crop_boxes: Mapping[str, Box] = field(default_factory=dict)
    renderer: Callable[[str], Image.Image] | None = None
    renderer_key: str | None = None
    seed: int | None = None

    @cached_property
    def gallery_index(self) -> dict[str, int]:
        """Column of each gallery image id in the score matrix."""
        return {image_id: column for column, image_id in enumerate(self.gallery)}

    @property
    def texts(self) -> list[str]:
        """Each query's modification text, in query order."""
        return [query.text for query in self.queries]

    @property
    def reference_ids(self) -> list[str]:
        """The distinct reference image ids, in order of first use."""
        return list(dict.fromkeys(query.reference for query in self.queries))

    @property
    def name(self) -> str:
        """The split's name in messages: benchmark, category (if any) and split."""
        return " ".join(part for part in (self.benchmark, self.category, self.split) if part)

    @property
    def has_query_galleries(self) -> bool:
        """Whether queries rank only their own gallery (GeneCIS)."""
        return any(query.gallery is not None for query in self.queries)

    def open_image(self, image_id: str) -> Image.Image:
        """The RGB image for `image_id`, cropped as the benchmark prescribes."""
        if self.renderer is not None:
            return self.renderer(image_id)
        with Image.open(self.image_paths[image_id]) as raw:
            image = raw.convert("RGB")
        box = self.crop_boxes.get(image_id)
        return image if box is None else crop_instance(image, box)


def crop_instance(image: Image.Image, box: Box, dilation: float = GENECIS_DILATION) -> Image.Image:
    """GeneCIS's instance crop: grow the box by `dilation` times its size, clip it, pad to a black square.

    The crop's top-left corner moves up and left by `dilation` times the box size; its far corner lies
    (1 + dilation) box sizes beyond that, both clipped to the image. The crop is then centred on a
    black square canvas.
    """
    x, y, width, height = box
    left, top = max(0.0, x - dilation * width), max(0.0, y - dilation * height)
    right = min(image.width, left + (1 + dilation) * width)
    bottom = min(image.height, top + (1 + dilation) * height)
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {list(box)} lies outside the {image.width}x{image.height} image")
    crop = image.crop((left, top, right, bottom))
    side = max(crop.size)
    canvas = Image.new(crop.mode, (side, side), (0, 0, 0))
    canvas.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return canvas


def check_images(split: CIRSplit, shown: int = 5) -> None:
    """Raise [`MissingImagesError`] listing the first `shown` missing image files and how many are missing."""
    missing = sorted({str(path) for path in split.image_paths.values() if not Path(path).is_file()})
    if missing:
        listed = ", ".join(missing[:shown])
        more = f" ... and {len(missing) - shown} more" if len(missing) > shown else ""
        raise MissingImagesError(
            f"{split.name}: {len(missing)} of {len(set(split.image_paths.values()))} "
            f"image files are missing: {listed}{more}"
        )


def require_known(entry: Entry, name: str, image_ids: Sequence[str], known: Mapping[str, object]) -> None:
    """Fail on the first id of `image_ids` (read from field `name`) that is not in `known`."""
    for image_id in image_ids:
        if image_id not in known:
            raise entry.error(name, f"image {image_id!r} is not in the split's image list")


def first_existing(candidates: Sequence[Path]) -> Path:
    """The first candidate path that exists, else the first candidate (reported by [`check_images`])."""
    return next((path for path in candidates if path.exists()), candidates[0])


def unique(ids: Sequence[str]) -> tuple[str, ...]:
    """`ids` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(ids))
