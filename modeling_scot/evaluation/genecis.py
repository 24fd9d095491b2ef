"""GeneCIS in its official layout (github facebookresearch/genecis).

    <data_root>/genecis/{focus_attribute,change_attribute,focus_object,change_object}.json
        [{"reference": image, "target": image, "condition": str, "gallery": [image, ...]}, ...]
    attribute tasks: image = {"image_id": <Visual Genome 1.2 id>, "instance_bbox": [x, y, width, height]}
        images at <data_root>/VG_100K_all/<image_id>.jpg (also looked up in VG_100K/ and VG_100K_2/)
    object tasks:    image = {"val_image_id": <COCO 2017 val id>}
        images at <data_root>/val2017/<val_image_id:012d>.jpg

Attribute-task images are instance crops (see `crop_instance`; `CIRSplit.open_image` applies them),
so their ids name the box too: "<image_id>@<x>,<y>,<width>,<height>".

Protocol: each query ranks its own gallery, the target followed by the file's gallery entries (an entry
repeating the target is dropped); Recall@1/2/3 per task, with ties counted against the target.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..json_files import Entry, entries
from .cir_data import Box, CIRQuery, CIRSplit, first_existing, unique

TASKS = ("focus_attribute", "change_attribute", "focus_object", "change_object")
VG_FOLDERS = ("VG_100K_all", "VG_100K", "VG_100K_2")
COCO_FOLDER = "val2017"


def _box(entry: Entry, name: str) -> list[float]:
    values = entry.get(name, list)
    if len(values) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise entry.error(name, f"expected [x, y, width, height], got {values!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise entry.error(name, f"width and height must be positive, got {values!r}")
    return values


class _Images:
    """Image ids, files and crop boxes of one task, filled while reading its entries."""

    def __init__(self, task: str, data_root: Path, image_root: Path | None) -> None:
        self.attributes = task.endswith("_attribute")
        default = (data_root / folder for folder in (VG_FOLDERS if self.attributes else (COCO_FOLDER,)))
        self.roots = [Path(image_root)] if image_root is not None else list(default)
        self.paths: dict[str, Path] = {}
        self.boxes: dict[str, Box] = {}
        self._files: dict[str, Path] = {}

    def read(self, image: Entry) -> str:
        """The id of one annotated image, registering its file (and crop box)."""
        if self.attributes:
            source = image.image_id("image_id")
            box = _box(image, "instance_bbox")
            image_id = f"{source}@{','.join(str(v) for v in box)}"
            self.boxes[image_id] = tuple(float(v) for v in box)
            filename = f"{source}.jpg"
        else:
            source = image.get("val_image_id", int)
            image_id, filename = str(source), f"{source:012d}.jpg"
        if filename not in self._files:
            self._files[filename] = first_existing([root / filename for root in self.roots])
        self.paths[image_id] = self._files[filename]
        return image_id


def load_genecis(data_root: Path, split: str, image_root: Path | None = None) -> CIRSplit:
    """Load one GeneCIS task; the split's gallery is the union of the queries' galleries.

    Args:
        data_root: the folder holding `genecis/<task>.json` and the image folders.
        split: the task: "focus_attribute", "change_attribute", "focus_object" or "change_object".
        image_root: the folder of the task's source images (default: see the module doc).
    """
    if split not in TASKS:
        raise ValueError(f"GeneCIS task must be one of {TASKS}, got {split!r}")
    data_root = Path(data_root)
    file = data_root / "genecis" / f"{split}.json"
    images = _Images(split, data_root, image_root)
    queries = []
    for entry in entries(file):
        condition, target = entry.text("condition"), images.read(entry.child("target"))
        queries.append(
            CIRQuery(
                query_id=f"{split}-{entry.index}",
                reference=images.read(entry.child("reference")),
                text=condition,
                target=target,
                positives=(target,),
                captions=(condition,),
                gallery=unique([target, *(images.read(item) for item in entry.children("gallery"))]),
            )
        )
    return CIRSplit(
        benchmark="genecis",
        split=split,
        queries=queries,
        gallery=unique([image_id for query in queries for image_id in query.gallery]),
        image_paths=images.paths,
        remove_reference=False,
        has_targets=True,
        annotation_file=file,
        crop_boxes=images.boxes,
    )
