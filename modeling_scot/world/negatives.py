"""Hard negatives: captions of scenes that nearly, but not quite, satisfy a modification."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from .captions import caption
from .edits import Edit
from .scene import Scene, one_off_variants


def _shuffled(items: list, rng: random.Random | None) -> list:
    if rng is not None:
        rng.shuffle(items)
    return items


def _candidate_streams(scene: Scene, edited: Scene, edit: Edit, rng: random.Random | None) -> list[Iterator[Scene]]:
    """The three groups of [`near_miss_scenes`] as lazy streams (shuffled with `rng`, if given) that may repeat
    scenes and hold `edited`: a near miss is applied only when reached, and the one-off group is only built
    when the first one-off is asked for, so a draw of one or two skips most of the work."""
    misses = _shuffled(edit.near_misses(scene), rng)

    def wrong_edits() -> Iterator[Scene]:
        return (missed for missed in (miss.apply(scene) for miss in misses) if missed not in (None, scene))

    def one_offs() -> Iterator[Scene]:
        wrong = set(wrong_edits())
        yield from _shuffled([variant for variant in one_off_variants(edited) if variant not in wrong], rng)

    return [wrong_edits(), iter([scene]), one_offs()]


def _unseen(stream: Iterable[Scene], seen: set[Scene]) -> Iterator[Scene]:
    """The scenes of `stream` not in `seen`, each added to it as it passes."""
    for scene in stream:
        if scene not in seen:
            seen.add(scene)
            yield scene


def near_miss_scenes(scene: Scene, edited: Scene, edit: Edit) -> list[list[Scene]]:
    """Near misses of `edited` (= `edit` applied to `scene`) in three groups: the edit with a wrong value or on
    another object (or half done, for a composition); the unedited scene; the edited scene with one attribute
    (or cell) of one object off. Groups hold distinct scenes, none in an earlier group or equal to `edited`."""
    seen = {edited}
    return [list(_unseen(stream, seen)) for stream in _candidate_streams(scene, edited, edit, None)]


def hard_negative_captions(scene: Scene, edited: Scene, edit: Edit, rng: random.Random, k: int) -> list[str]:
    """Paraphrased captions of `k` distinct near misses (fewer only if fewer exist), drawn at random from the
    groups of [`near_miss_scenes`] in turn, so that every kind of mistake is represented. Groups are drawn
    from lazily: small `k` never builds the large one-off group."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    seen = {edited}
    pending = [_unseen(stream, seen) for stream in _candidate_streams(scene, edited, edit, rng)]
    chosen: list[Scene] = []
    while pending and len(chosen) < k:
        for stream in list(pending):
            if len(chosen) == k:
                break
            negative = next(stream, None)
            if negative is None:
                pending.remove(stream)
            else:
                chosen.append(negative)
    return [caption(negative, rng) for negative in chosen]
