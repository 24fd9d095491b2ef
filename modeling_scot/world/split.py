"""The compositional train/test split: held-out combinations of changes, and a held-out partition of scenes.

A change from a reference scene to a target scene *uses* these combinations (see [`change_combinations`]):
``("object", shape, colour)`` for every object that appears or disappears (edited, added, removed, moved or
swapped objects, compared as whole objects), and ``("value", attribute, value)`` for every attribute that
takes a new value in place (the object in the same cell had another value before). The change is held out
when one of them is in `HELD_OUT_OBJECTS` or `HELD_OUT_VALUES`. Training triplets never use a held-out
change; benchmark queries always do. Separately, about one scene in `TEST_SCENE_MODULUS` belongs to the test
partition (by a stable hash of its objects' (shape, colour) pairs): training never shows such a scene, as
reference or as target; benchmark queries use only such scenes.
"""

from __future__ import annotations

import hashlib

from .scene import APPEARANCE, Scene

HELD_OUT_VALUES: frozenset[tuple[str, str, str]] = frozenset(
    {("value", "colour", "purple"), ("value", "shape", "star")}
)
"""Held-out target values: turning an object purple, turning an object into a star."""
HELD_OUT_OBJECTS: frozenset[tuple[str, str, str]] = frozenset(
    ("object", shape, colour)
    for shape, colour in (
        ("circle", "yellow"),
        ("circle", "black"),
        ("square", "blue"),
        ("triangle", "green"),
        ("triangle", "white"),
        ("cross", "red"),
        ("diamond", "orange"),
    )
)
"""Held-out (shape, colour) pairs of the objects a change touches."""
HELD_OUT: frozenset[tuple[str, str, str]] = HELD_OUT_VALUES | HELD_OUT_OBJECTS
TEST_SCENE_MODULUS = 8


def change_combinations(reference: Scene, target: Scene) -> frozenset[tuple[str, str, str]]:
    """The combinations a change from `reference` to `target` uses (see the module docstring)."""
    removed = [obj for obj in reference.objects if obj not in target.objects]
    added = [obj for obj in target.objects if obj not in reference.objects]
    combinations = {("object", obj.shape, obj.colour) for obj in removed + added}
    before = {obj.cell: obj for obj in removed}
    for obj in added:
        if obj.cell in before:
            old = before[obj.cell]
            combinations |= {
                ("value", name, getattr(obj, name)) for name in APPEARANCE if getattr(obj, name) != getattr(old, name)
            }
    return frozenset(combinations)


def is_test_combination(reference: Scene, target: Scene) -> bool:
    """Whether the change from `reference` to `target` uses a held-out combination."""
    return not HELD_OUT.isdisjoint(change_combinations(reference, target))


def is_test_scene(scene: Scene) -> bool:
    """Whether `scene` is in the held-out partition: a stable hash (not Python's salted `hash`) of its sorted
    (shape, colour) pairs, so sizes, styles and cells do not change the partition of a scene."""
    key = ",".join(sorted(f"{obj.shape}-{obj.colour}" for obj in scene.objects))
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % TEST_SCENE_MODULUS == 0
