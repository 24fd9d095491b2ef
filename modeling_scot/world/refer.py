"""Referring expressions: the shortest description that picks one object out of a scene ("the red circle")."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations

from .lexicon import object_words, static_location
from .scene import Scene, WorldObject

DESCRIPTORS: tuple[str, ...] = ("colour", "size", "style", "cell")
"""Attributes a description may add to the shape noun, in order of preference."""
OVERSPECIFY_PROBABILITY = 0.25


def _unique(obj: WorldObject, attributes: tuple[str, ...], scenes: Sequence[Scene]) -> bool:
    return not any(other != obj and obj.matches(other, attributes) for scene in scenes for other in scene.objects)


def minimal_descriptors(obj: WorldObject, scenes: Sequence[Scene]) -> list[tuple[str, ...]]:
    """All smallest sets of descriptors that, with the shape, match `obj` and no other object of any scene."""
    for count in range(len(DESCRIPTORS) + 1):
        found = [names for names in combinations(DESCRIPTORS, count) if _unique(obj, names, scenes)]
        if found:
            return found
    raise ValueError(f"{obj} cannot be told apart from another object")


def refer(obj: WorldObject, scenes: Sequence[Scene], rng: random.Random | None = None) -> str:
    """A noun phrase without article naming `obj` unambiguously in each of `scenes`: "red circle",
    "circle in the top left". Canonical (first minimal description) without `rng`; with it a random minimal
    description, sometimes with one redundant adjective, as people write."""
    options = minimal_descriptors(obj, scenes)
    names = options[0] if rng is None else rng.choice(options)
    if rng is not None and rng.random() < OVERSPECIFY_PROBABILITY:
        extra = [name for name in DESCRIPTORS[:-1] if name not in names]
        names = (*names, rng.choice(extra)) if extra else names
    phrase = object_words(obj, names, rng)
    return f"{phrase} {static_location(obj.cell, rng)}" if "cell" in names else phrase
