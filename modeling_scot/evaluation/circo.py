"""CIRCO in its official layout.

    <data_root>/annotations/{val,test}.json
        id, reference_img_id, relative_caption, shared_concept; val also target_img_id and gt_img_ids
    <data_root>/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json   images: [{id, file_name}, ...]
    <data_root>/COCO2017_unlabeled/unlabeled2017/<file_name>                    e.g. 000000243611.jpg

Protocol: every query ranks the whole COCO 2017 unlabeled set (the reference is not removed); mAP@K
for K in 5, 10, 25, 50 over all ground truths, and Recall@K on `target_img_id` (the first ground
truth) on val. Test ground truths are held by the CIRCO evaluation server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..json_files import AnnotationError, Entry, entries, read_json
from .cir_data import CIRQuery, CIRSplit, require_known, unique

SPLITS = ("val", "test")
COCO_FOLDER = "COCO2017_unlabeled"


def annotation_file(data_root: Path, split: str) -> Path:
    """The official annotation file of a split."""
    if split not in SPLITS:
        raise ValueError(f"CIRCO split must be one of {SPLITS}, got {split!r}")
    return Path(data_root) / "annotations" / f"{split}.json"


def read_circo_queries(
    file: Path, with_targets: bool, known_images: Mapping[str, object] | None = None
) -> list[CIRQuery]:
    """The queries of a CIRCO annotation file; ids are checked against `known_images` when given."""
    queries, seen = [], set()
    for entry in entries(file, "id"):
        query_id = str(entry.get("id", (int, str)))
        if query_id in seen:
            raise entry.error("id", "appears twice in the file")
        seen.add(query_id)
        reference, caption = entry.image_id("reference_img_id"), entry.text("relative_caption")
        target, positives = _ground_truth(entry) if with_targets else (None, ())
        if known_images is not None:
            require_known(entry, "reference_img_id", [reference], known_images)
            require_known(entry, "gt_img_ids", positives, known_images)
        queries.append(
            CIRQuery(
                query_id=query_id,
                reference=reference,
                text=caption,
                target=target,
                positives=positives,
                captions=(caption,),
                shared_concept=entry.text("shared_concept"),
            )
        )
    return queries


def _ground_truth(entry: Entry) -> tuple[str, tuple[str, ...]]:
    target = entry.image_id("target_img_id")
    positives = unique(entry.id_list("gt_img_ids"))
    if target not in positives:
        raise entry.error("gt_img_ids", f"does not contain target_img_id {target}")
    return target, positives


def _coco_images(data_root: Path) -> dict[str, Path]:
    file = data_root / COCO_FOLDER / "annotations" / "image_info_unlabeled2017.json"
    info = read_json(file)
    if not isinstance(info, dict) or not isinstance(info.get("images"), list):
        raise AnnotationError(file, "expected an object with an 'images' list")
    folder = data_root / COCO_FOLDER / "unlabeled2017"
    paths = {}
    for index, item in enumerate(info["images"]):
        if not isinstance(item, dict):
            raise AnnotationError(file, f"expected an object, got {type(item).__name__}", index, field="images")
        image = Entry(file, index, item, None, "images.")
        paths[str(image.get("id", int))] = folder / image.text("file_name")
    return paths


def load_circo(data_root: Path, split: str) -> CIRSplit:
    """Load CIRCO val or test; the gallery is the COCO 2017 unlabeled image list, in file order.

    Args:
        data_root: the folder holding `annotations/` and `COCO2017_unlabeled/`.
        split: "val" or "test" (test has no ground truths).
    """
    data_root = Path(data_root)
    file = annotation_file(data_root, split)
    images = _coco_images(data_root)
    return CIRSplit(
        benchmark="circo",
        split=split,
        queries=read_circo_queries(file, split == "val", images),
        gallery=tuple(images),
        image_paths=images,
        remove_reference=False,
        has_targets=split == "val",
        annotation_file=file,
    )
