"""CIRR (version rc2) in its official layout.

    <data_root>/captions/cap.rc2.{train,val,test1}.json
    <data_root>/image_splits/split.rc2.{train,val,test1}.json    image name -> "./dev/dev-244-0-img0.png"
    <data_root>/img_raw/{train/<n>,dev,test1}/<name>.png

The split files' relative paths are rooted at `img_raw/` in the official layout. CLIP4Cir and SEARLE
instead keep `train/`, `dev/` and `test1/` beside the `cirr/` annotation folder, i.e. in data_root's
parent. Without an explicit `image_root`, the first of `img_raw/`, data_root and its parent that holds
the split's image folder is used.

Protocol: Recall@K ranks the whole split gallery with the query's reference removed, on
`target_hard`; Recall_subset@K ranks the query's `img_set.members` without the reference. test1 has
no targets (scored by the CIRR evaluation server). A query with a blank caption (pairid
27098) is kept, in any split, with empty text: its query is the reference image alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..json_files import AnnotationError, entries, read_json
from .cir_data import CIRQuery, CIRSplit, require_known

SPLITS = ("train", "val", "test1")
VERSION = "rc2"


def captions_file(data_root: Path, split: str) -> Path:
    """The official caption file of a split."""
    if split not in SPLITS:
        raise ValueError(f"CIRR split must be one of {SPLITS}, got {split!r}")
    return Path(data_root) / "captions" / f"cap.{VERSION}.{split}.json"


def read_cirr_queries(
    file: Path, with_targets: bool, known_images: Mapping[str, object] | None = None
) -> list[CIRQuery]:
    """The queries of a CIRR caption file; ids are checked against `known_images` when given."""
    queries, seen = [], set()
    for entry in entries(file, "pairid"):
        query_id = str(entry.get("pairid", (int, str)))
        if query_id in seen:
            raise entry.error("pairid", "appears twice in the file")
        seen.add(query_id)
        caption = entry.text("caption")
        reference = entry.image_id("reference")
        members = entry.child("img_set").id_list("members")
        target = entry.image_id("target_hard") if with_targets else None
        if known_images is not None:
            require_known(entry, "reference", [reference], known_images)
            require_known(entry, "img_set.members", members, known_images)
            if target is not None:
                require_known(entry, "target_hard", [target], known_images)
        queries.append(
            CIRQuery(
                query_id=query_id,
                reference=reference,
                text=caption.strip(),
                target=target,
                positives=(target,) if target is not None else (),
                captions=(caption,),
                subset=tuple(members),
            )
        )
    return queries


def _relative_paths(file: Path) -> dict[str, str]:
    data = read_json(file)
    if not isinstance(data, dict):
        raise AnnotationError(file, f"expected an object mapping image names to paths, got {type(data).__name__}")
    for name, path in data.items():
        if not isinstance(path, str) or not Path(path).parts:
            raise AnnotationError(file, f"expected a relative path string, got {path!r}", entry_id=name)
    return data


def _image_root(data_root: Path, relative_paths: Mapping[str, str]) -> Path:
    official = data_root / "img_raw"
    first = next(iter(relative_paths.values()), None)
    if first is None:
        return official
    folder = Path(first).parts[0]
    return next((root for root in (official, data_root, data_root.parent) if (root / folder).is_dir()), official)


def load_cirr(data_root: Path, split: str, image_root: Path | None = None) -> CIRSplit:
    """Load a CIRR split (train, val or test1); the gallery is every image of the split file, in file order.

    Args:
        data_root: the folder holding `captions/` and `image_splits/`.
        split: "train", "val" or "test1".
        image_root: folder the split file's relative paths start from (default: detected, see the module doc).
    """
    data_root = Path(data_root)
    file = captions_file(data_root, split)
    relative_paths = _relative_paths(data_root / "image_splits" / f"split.{VERSION}.{split}.json")
    root = Path(image_root) if image_root is not None else _image_root(data_root, relative_paths)
    return CIRSplit(
        benchmark="cirr",
        split=split,
        queries=read_cirr_queries(file, split != "test1", relative_paths),
        gallery=tuple(relative_paths),
        image_paths={name: root / path for name, path in relative_paths.items()},
        remove_reference=True,
        has_targets=split != "test1",
        annotation_file=file,
    )
