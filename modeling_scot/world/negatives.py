"""Hard negatives: captions of scenes that nearly, but not quite, satisfy a modification."""

from __future__ import annotations

import random
from collections.abc import Iterator

from .captions import caption
from .edits import Edit
from .scene import Scene, one_off_variants


def _near_miss_groups(scene: Scene, edited: Scene, edit: Edit) -> Iterator[list[Scene]]:
    """The groups of [`near_miss_scenes`], each built only when the caller asks for it."""
    seen = {edited}
    builders = (
        lambda: [s for s in (miss.apply(scene) for miss in edit.near_misses(scene)) if s is not None],
        lambda: [scene],
        lambda: one_off_variants(edited),
    )
    for build in builders:
        unique = [s for s in dict.fromkeys(build()) if s not in seen]
        seen.update(unique)
        yield unique


def near_miss_scenes(scene: Scene, edited: Scene, edit: Edit) -> list[list[Scene]]:
    """Near misses of `edited` (= `edit` applied to `scene`) in three groups: the edit with a wrong value or on
    another object (or half done, for a composition); the unedited scene; the edited scene with one attribute
    (or cell) of one object off. Groups hold distinct scenes, none equal to `edited`."""
    return list(_near_miss_groups(scene, edited, edit))


def hard_negative_captions(scene: Scene, edited: Scene, edit: Edit, rng: random.Random, k: int) -> list[str]:
    """Paraphrased captions of `k` distinct near misses (fewer only if fewer exist), drawn in turn from the
    groups of [`near_miss_scenes`] so that every kind of mistake is represented. A group is built (and
    shuffled) only once a draw reaches it, so small `k` skips the large one-off group."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pending = _near_miss_groups(scene, edited, edit)
    groups: list[list[Scene]] = []
    chosen: list[Scene] = []
    while len(chosen) < k:
        group = next(pending, None)
        if group is not None:
            rng.shuffle(group)
            groups.append(group)
            draw_from = [group]
        elif any(groups):
            draw_from = groups
        else:
            break
        for group in draw_from:
            if group and len(chosen) < k:
                chosen.append(group.pop())
    return [caption(negative, rng) for negative in chosen]
