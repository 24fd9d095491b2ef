"""Tiny CIRR, FashionIQ, CIRCO and GeneCIS datasets in their official layouts, with small PIL images.

Galleries list images in column order, so a score matrix of `-column` ranks them in gallery order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

CIRR_GALLERY_SIZE = 60
CIRR_VAL = [  # pairid, reference column, target column, img_set member columns (reference and target included)
    (101, 0, 1, [0, 1, 7, 8, 9, 10]),
    (102, 5, 3, [5, 3, 1, 2, 50, 51]),
    (103, 2, 30, [2, 30, 10, 11, 12, 40]),
    (104, 0, 55, [0, 55, 56, 57, 58, 59]),
]
CIRR_TEST1 = [(27098, 4, [4, 6, 8, 10, 12, 14]), (27099, 9, [9, 1, 2, 3, 4, 5])]  # pairid, reference, members

FIQ_GALLERY = [f"B00DRESS{i:02d}" for i in range(12)]
FIQ_VAL = [  # candidate column, target column, captions
    (0, 2, ["is shorter.", "has  a red belt? "]),
    (4, 11, ["Is blue", ""]),
    (7, 0, ["  ", "longer sleeves,"]),
]
FIQ_TEST = [(3, ["is green", "is plain"])]

CIRCO_IDS = [1000 + 7 * i for i in range(60)]
CIRCO_VAL = [  # id, reference column, target column, ground-truth columns (target first)
    (0, 0, 1, [1, 3, 20]),
    (1, 5, 0, [0, 59]),
]
CIRCO_TEST = [(0, 2), (1, 3)]  # id, reference column

VG_IDS = (11, 12, 13)
VG_SIZE = (40, 20)
COCO_IDS = (139, 285, 632, 724, 776, 785)


def _image(path: Path, index: int, size: tuple[int, int] = (4, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (37 * index % 256, 91 * index % 256, 53 * index % 256)
    Image.new("RGB", size, colour).save(path)


def write_json(path: Path, payload: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return path


def edit_json(path: Path, change: Callable[[object], object]) -> None:
    """Let `change` edit the file's parsed JSON in place (its return value is ignored), then write it back."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_json(path, data)


def cirr_name(split: str, column: int) -> str:
    return f"{'dev' if split == 'val' else split}-{column}-0-img{column % 2}"


def make_cirr(root: Path) -> Path:
    """val (4 queries with targets), test1 (no targets, pairid 27098 with a blank caption) and train
    (NLVR2's numbered sub-folders); images under img_raw/ as in the official layout."""
    for split in ("val", "test1"):
        names = [cirr_name(split, column) for column in range(CIRR_GALLERY_SIZE)]
        folder = "dev" if split == "val" else split
        write_json(root / "image_splits" / f"split.rc2.{split}.json", {n: f"./{folder}/{n}.png" for n in names})
        for column, name in enumerate(names):
            _image(root / "img_raw" / folder / f"{name}.png", column)
    val = [
        {
            "pairid": pairid,
            "reference": cirr_name("val", reference),
            "target_hard": cirr_name("val", target),
            "target_soft": {cirr_name("val", target): 1.0},
            "caption": f"change number {pairid}",
            "img_set": {"id": pairid % 7, "members": [cirr_name("val", m) for m in members]},
        }
        for pairid, reference, target, members in CIRR_VAL
    ]
    test1 = [
        {
            "pairid": pairid,
            "reference": cirr_name("test1", reference),
            "caption": " " if pairid == 27098 else "add a dog",
            "img_set": {"id": 3, "members": [cirr_name("test1", m) for m in members], "reference_rank": 0},
        }
        for pairid, reference, members in CIRR_TEST1
    ]
    write_json(root / "captions" / "cap.rc2.val.json", val)
    write_json(root / "captions" / "cap.rc2.test1.json", test1)
    train = ["train-1-0-img0", "train-1-0-img1"]
    write_json(root / "image_splits" / "split.rc2.train.json", {n: f"./train/34/{n}.png" for n in train})
    for column, name in enumerate(train):
        _image(root / "img_raw" / "train" / "34" / f"{name}.png", column)
    item = {"pairid": 7, "reference": train[0], "target_hard": train[1], "target_soft": {}, "caption": "x"}
    write_json(root / "captions" / "cap.rc2.train.json", [item | {"img_set": {"id": 0, "members": train}}])
    return root


def make_fashioniq(root: Path) -> Path:
    """The dress category's val and test splits; even-numbered images are PNG, odd ones JPEG."""
    for split in ("val", "test"):
        write_json(root / "image_splits" / f"split.dress.{split}.json", FIQ_GALLERY)
    for column, name in enumerate(FIQ_GALLERY):
        _image(root / "images" / f"{name}.{'png' if column % 2 == 0 else 'jpg'}", column)
    val = [
        {"target": FIQ_GALLERY[target], "candidate": FIQ_GALLERY[candidate], "captions": captions}
        for candidate, target, captions in FIQ_VAL
    ]
    test = [{"candidate": FIQ_GALLERY[candidate], "captions": captions} for candidate, captions in FIQ_TEST]
    write_json(root / "captions" / "cap.dress.val.json", val)
    write_json(root / "captions" / "cap.dress.test.json", test)
    return root


def make_circo(root: Path) -> Path:
    """val (2 queries) and test (2 queries) over a 60-image stand-in for COCO 2017 unlabeled."""
    coco = root / "COCO2017_unlabeled"
    images = [{"id": image_id, "file_name": f"{image_id:012d}.jpg"} for image_id in CIRCO_IDS]
    write_json(coco / "annotations" / "image_info_unlabeled2017.json", {"info": {}, "images": images})
    for column, image_id in enumerate(CIRCO_IDS):
        _image(coco / "unlabeled2017" / f"{image_id:012d}.jpg", column)
    val = [
        {
            "reference_img_id": CIRCO_IDS[reference],
            "target_img_id": CIRCO_IDS[target],
            "relative_caption": f"shows {query_id + 2} cats",
            "shared_concept": "a cat",
            "gt_img_ids": [CIRCO_IDS[column] for column in positives],
            "id": query_id,
            "semantic_aspects": ["cardinality"],
        }
        for query_id, reference, target, positives in CIRCO_VAL
    ]
    test = [
        {"reference_img_id": CIRCO_IDS[ref], "relative_caption": "is red", "shared_concept": "a car", "id": query_id}
        for query_id, ref in CIRCO_TEST
    ]
    write_json(root / "annotations" / "val.json", val)
    write_json(root / "annotations" / "test.json", test)
    return root


def vg(image_id: int, box: list[float]) -> dict[str, object]:
    return {"image_id": image_id, "instance_bbox": box}


def coco(image_id: int) -> dict[str, int]:
    return {"val_image_id": image_id}


def make_genecis(root: Path) -> Path:
    """focus_attribute (Visual Genome crops; image 13 only in VG_100K_2/) and change_object (COCO val2017)."""
    for index, image_id in enumerate(VG_IDS):
        folder = "VG_100K_2" if image_id == 13 else "VG_100K_all"
        _image(root / folder / f"{image_id}.jpg", index, VG_SIZE)
    for index, image_id in enumerate(COCO_IDS):
        _image(root / "val2017" / f"{image_id:012d}.jpg", index)
    focus_attribute = [
        {
            "reference": vg(11, [10, 5, 10, 4]),
            "target": vg(12, [0, 0, 8, 8]),
            "condition": "colour",
            "gallery": [vg(12, [20, 2, 5.5, 6]), vg(13, [1, 1, 4, 4]), vg(11, [10, 5, 10, 4])],
        },
        {
            "reference": vg(13, [1, 1, 4, 4]),
            "target": vg(12, [20, 2, 5.5, 6]),
            "condition": "material",
            "gallery": [vg(12, [20, 2, 5.5, 6]), vg(11, [0, 0, 3, 3]), vg(12, [0, 0, 8, 8])],
        },
    ]
    change_object = [
        {"reference": coco(139), "target": coco(285), "condition": "dog", "gallery": [coco(632), coco(724)]},
        {"reference": coco(776), "target": coco(785), "condition": "cat", "gallery": [coco(139), coco(632)]},
    ]
    write_json(root / "genecis" / "focus_attribute.json", focus_attribute)
    write_json(root / "genecis" / "change_object.json", change_object)
    return root
