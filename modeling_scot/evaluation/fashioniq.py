"""FashionIQ in its official layout.

    <data_root>/captions/cap.{dress,shirt,toptee}.{train,val,test}.json     candidate, target, captions[2]
    <data_root>/image_splits/split.{dress,shirt,toptee}.{train,val,test}.json  the category's image ids
    <data_root>/images/<id>.jpg

The official starter kit and SEARLE/LinCIR read `<id>.jpg`, CLIP4Cir and Pic2Word `<id>.png`: each
image is looked up as .jpg, then .png, then .jpeg.

Protocol: each category is scored on its own val split, ranking the category's val images with the
reference kept in the gallery; Recall@10 and Recall@50 per category, then their averages. Test
targets are not public.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..json_files import AnnotationError, Entry, entries, read_json
from .cir_data import CIRQuery, CIRSplit, first_existing, require_known, unique

CATEGORIES = ("dress", "shirt", "toptee")
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")
_STRIPPED = ".?, "


def join_captions(captions: Sequence[str]) -> str:
    """The SEARLE/LinCIR query text: "<c1> and <c2>", each caption stripped of ".?, " at both ends.

    Captions that are empty once stripped (a few in the official files) are left out rather than
    leaving a dangling "and".
    """
    return " and ".join(text for text in (caption.strip(_STRIPPED) for caption in captions) if text)


def _gallery(file: Path) -> tuple[str, ...]:
    data = read_json(file)
    if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
        raise AnnotationError(file, "expected a JSON list of image id strings")
    return unique(data)


def _captions(entry: Entry) -> tuple[str, ...]:
    captions = entry.get("captions", list)
    if not captions or not all(isinstance(caption, str) for caption in captions):
        raise entry.error("captions", f"expected a non-empty list of strings, got {captions!r}")
    return tuple(captions)


def load_fashioniq(data_root: Path, split: str, category: str, image_root: Path | None = None) -> CIRSplit:
    """Load one FashionIQ category's split; the gallery is its image split file, in file order.

    Args:
        data_root: the folder holding `captions/`, `image_splits/` and `images/`.
        split: "train", "val" or "test" (test has no targets).
        category: "dress", "shirt" or "toptee".
        image_root: the image folder (default `<data_root>/images`).
    """
    if split not in SPLITS:
        raise ValueError(f"FashionIQ split must be one of {SPLITS}, got {split!r}")
    if category not in CATEGORIES:
        raise ValueError(f"FashionIQ category must be one of {CATEGORIES}, got {category!r}")
    data_root = Path(data_root)
    root = Path(image_root) if image_root is not None else data_root / "images"
    file = data_root / "captions" / f"cap.{category}.{split}.json"
    gallery = _gallery(data_root / "image_splits" / f"split.{category}.{split}.json")
    known = dict.fromkeys(gallery)
    has_targets = split != "test"
    queries = []
    for entry in entries(file):
        captions = _captions(entry)
        target = entry.image_id("target") if has_targets else None
        if target is not None:
            require_known(entry, "target", [target], known)
        queries.append(
            CIRQuery(
                query_id=f"{category}-{entry.index}",
                reference=entry.image_id("candidate"),
                text=join_captions(captions),
                target=target,
                positives=(target,) if target is not None else (),
                captions=captions,
            )
        )
    images = unique([*gallery, *(query.reference for query in queries)])
    return CIRSplit(
        benchmark="fashioniq",
        split=split,
        queries=queries,
        gallery=gallery,
        image_paths={name: first_existing([root / f"{name}{ext}" for ext in IMAGE_EXTENSIONS]) for name in images},
        remove_reference=False,
        has_targets=has_targets,
        annotation_file=file,
        category=category,
    )
