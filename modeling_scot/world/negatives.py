"""Hard negatives: captions of scenes that nearly, but not quite, satisfy a modification."""

from __future__ import annotations

import random

from .captions import caption
from .edits import Edit
from .scene import Scene, one_off_variants


def near_miss_scenes(scene: Scene, edited: Scene, edit: Edit) -> list[list[Scene]]:
    """Near misses of `edited` (= `edit` applied to `scene`) in three groups: the edit with a wrong value or on
    another object (or half done, for a composition); the unedited scene; the edited scene with one attribute
    (or cell) of one object off. Groups hold distinct scenes, none equal to `edited`."""
    missed = [miss.apply(scene) for miss in edit.near_misses(scene)]
    groups = [[s for s in missed if s is not None], [scene], one_off_variants(edited)]
    seen = {edited}
    unique_groups = []
    for group in groups:
        unique = [s for s in dict.fromkeys(group) if s not in seen]
        seen.update(unique)
        unique_groups.append(unique)
    return unique_groups


def hard_negative_captions(scene: Scene, edited: Scene, edit: Edit, rng: random.Random, k: int) -> list[str]:
    """Paraphrased captions of `k` distinct near misses (fewer only if fewer exist), drawn in turn from the
    groups of [`near_miss_scenes`] so that every kind of mistake is represented."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    groups = near_miss_scenes(scene, edited, edit)
    for group in groups:
        rng.shuffle(group)
    chosen: list[Scene] = []
    while len(chosen) < k and any(groups):
        for group in groups:
            if group and len(chosen) < k:
                chosen.append(group.pop())
    return [caption(negative, rng) for negative in chosen]
