"""Export the world benchmark's test split in CIRR's file layout, so the CIRR loader runs on rendered images.

    <folder>/captions/cap.rc2.<split>.json          pairid, reference, target_hard, target_soft, caption, img_set
    <folder>/image_splits/split.rc2.<split>.json    image name -> "./dev/<name>.png"
    <folder>/img_raw/dev/<name>.png

Image names are `world<seed>-<gallery id>`; pair ids are query positions; each query's `img_set` holds its
Recall_subset scenes (target, reference, 4 near misses), as CIRR's sets hold the reference's look-alikes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from ..io_utils import write_json
from .benchmark import build_benchmark
from .render import render_scene

CIRR_VERSION = "rc2"
IMAGE_FOLDER = "dev"


def export_cirr(
    seed: int,
    folder: str | os.PathLike,
    *,
    num_queries: int = 1000,
    split: str = "val",
    image_size: int = 64,
    progress: bool = True,
) -> Path:
    """Write the test split of world `seed` into `folder` (which must not exist yet) as CIRR `split`
    ("val" or "train" keep the targets; "test1" leaves them out, as CIRR's test server does).

    The folder appears only once complete (written beside it, then renamed).
    """
    folder = Path(folder)
    if split not in ("train", "val", "test1"):
        raise ValueError(f"CIRR split must be train, val or test1, got {split!r}")
    if folder.exists():
        raise FileExistsError(f"export folder {str(folder)!r} already exists: choose a new one")
    benchmark = build_benchmark(seed, num_queries)
    names = [f"world{seed}-{index:05d}" for index in range(len(benchmark.gallery))]
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    images = tmp / "img_raw" / IMAGE_FOLDER
    images.mkdir(parents=True)
    for name, scene in tqdm(zip(names, benchmark.gallery), total=len(names), desc="rendering", disable=not progress):
        render_scene(scene, image_size).save(images / f"{name}.png")
    write_json(
        tmp / "image_splits" / f"split.{CIRR_VERSION}.{split}.json",
        {name: f"./{IMAGE_FOLDER}/{name}.png" for name in names},
    )
    captions = []
    for pairid, query in enumerate(benchmark.queries):
        entry = {"pairid": pairid, "reference": names[query.reference_id]}
        if split != "test1":  # CIRR's test split hides its targets
            entry |= {"target_hard": names[query.target_id], "target_soft": {names[query.target_id]: 1.0}}
        members = [names[member] for member in query.subset_ids]
        captions.append(entry | {"caption": query.modification, "img_set": {"id": pairid, "members": members}})
    write_json(tmp / "captions" / f"cap.{CIRR_VERSION}.{split}.json", captions)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    return folder


__all__ = ["export_cirr"]
