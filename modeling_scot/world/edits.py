"""Scene edits: each applies to a scene, can be undone, knows its near misses and writes its modification text."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import combinations

from .lexicon import ADJECTIVE_ORDER, object_words, static_location, target_location, value_word
from .refer import refer
from .scene import APPEARANCE, CELLS, MAX_OBJECTS, Scene, WorldObject, object_variants, sample_object

ATOMIC_EDIT_TYPES: tuple[str, ...] = ("colour", "shape", "size", "style", "add", "remove", "move", "swap")
EDIT_TYPES: tuple[str, ...] = (*ATOMIC_EDIT_TYPES, "compose")
COMPOSE_ATTEMPTS = 10
RELATIVE_SIZE_PROBABILITY = 0.5
"""How often a size change from medium is phrased relatively ("make the circle bigger")."""

TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "colour": (
        (
            "make the {ref} {value}",
            "turn the {ref} {value}",
            "paint the {ref} {value}",
            "color the {ref} {value}",
            "change the colour of the {ref} to {value}",
            "change the color of the {ref} to {value}",
        ),
        ("same picture but the {ref} is {value}", "the {ref} should be {value}"),
    ),
    "shape": (
        (
            "make the {ref} a {value}",
            "turn the {ref} into a {value}",
            "change the {ref} into a {value}",
            "change the shape of the {ref} to a {value}",
        ),
        ("same picture but the {ref} is a {value}", "the {ref} should be a {value}"),
    ),
    "size": (
        ("make the {ref} {value}", "change the size of the {ref} to {value}", "resize the {ref} to {value}"),
        ("same picture but the {ref} is {value}", "the {ref} should be {value}"),
    ),
    "size:larger": (
        ("make the {ref} bigger", "make the {ref} larger", "enlarge the {ref}"),
        ("same picture but the {ref} is bigger",),
    ),
    "size:smaller": (("make the {ref} smaller", "shrink the {ref}"), ("same picture but the {ref} is smaller",)),
    "style:solid": (
        ("make the {ref} solid", "fill in the {ref}", "fill the {ref}", "make the {ref} filled"),
        ("same picture but the {ref} is filled", "the {ref} should be solid"),
    ),
    "style:outlined": (
        ("make the {ref} outlined", "make the {ref} hollow", "only draw the outline of the {ref}"),
        ("same picture but the {ref} is hollow", "the {ref} should be outlined"),
    ),
    "add": (
        ("add {object} {location}", "put {object} {location}", "place {object} {location}", "draw {object} {location}"),
        ("same picture with {object} {location}", "same picture but there is also {object} {location}"),
    ),
    "remove": (
        (
            "remove the {ref}",
            "get rid of the {ref}",
            "delete the {ref}",
            "take away the {ref}",
            "take out the {ref}",
            "erase the {ref}",
        ),
        ("same picture without the {ref}", "the {ref} should be gone"),
    ),
    "move": (
        ("move the {ref} {destination}", "shift the {ref} {destination}", "put the {ref} {location}"),
        ("same picture but the {ref} is {location}", "the {ref} should be {location}"),
    ),
    "swap": (
        (
            "swap the {ref} and the {other}",
            "switch the {ref} and the {other}",
            "swap the positions of the {ref} and the {other}",
            "exchange the {ref} and the {other}",
        ),
        ("same picture but the {ref} and the {other} trade places", "the {ref} and the {other} should switch places"),
    ),
}
"""Modification templates per kind: (imperative, declarative). The first imperative one is canonical."""
COMPOSE_JOINERS: tuple[str, ...] = (" and ", " then ", " and then ", " and also ")


class Edit(ABC):
    """A change to a scene. Edits name the objects they act on, so they apply to any scene holding them."""

    @property
    @abstractmethod
    def type_name(self) -> str:
        """One of `EDIT_TYPES`."""

    @abstractmethod
    def subjects(self) -> tuple[WorldObject, ...]:
        """The objects of the input scene this edit refers to."""

    @abstractmethod
    def _change(self, scene: Scene) -> Scene | None:
        """The edited scene, given that every subject is in `scene`; None if the edit does not fit."""

    @abstractmethod
    def inverse(self) -> Edit:
        """The edit that turns the edited scene back into the input scene."""

    @abstractmethod
    def near_misses(self, scene: Scene) -> list[Edit]:
        """Edits close to this one on `scene`: the same edit with a wrong value or on another object."""

    @abstractmethod
    def describe(
        self,
        scene: Scene,
        rng: random.Random | None = None,
        *,
        imperative: bool = False,
        context: tuple[Scene, ...] = (),
    ) -> str:
        """The modification text for this edit on `scene`: canonical without `rng`, else a random phrasing.

        `imperative` keeps to commands ("make the circle blue"); object references are also unambiguous in
        the `context` scenes.
        """

    def apply(self, scene: Scene) -> Scene | None:
        """The edited scene, or None when the edit does not apply (missing subject, no room, no change)."""
        if any(subject not in scene.objects for subject in self.subjects()):
            return None
        edited = self._change(scene)
        return None if edited == scene else edited


class AtomicEdit(Edit):
    """An edit of one kind, written from the `TEMPLATES` of that kind."""

    @abstractmethod
    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        """The template key and the slot values; object references are unique in every one of `scenes`."""

    def describe(
        self,
        scene: Scene,
        rng: random.Random | None = None,
        *,
        imperative: bool = False,
        context: tuple[Scene, ...] = (),
    ) -> str:
        key, slots = self._slots((scene, *context), rng)
        commands, statements = TEMPLATES[key]
        choices = commands if imperative or rng is None else commands + statements
        template = choices[0] if rng is None else rng.choice(choices)
        return template.format(**slots)


@dataclass(frozen=True)
class ChangeAttribute(AtomicEdit):
    """Set one appearance attribute (shape, colour, size or style) of an object."""

    subject: WorldObject
    attribute: str
    value: str

    def __post_init__(self) -> None:
        if self.attribute not in APPEARANCE or self.value not in APPEARANCE[self.attribute]:
            raise ValueError(f"invalid attribute change {self.attribute}={self.value!r}")

    @property
    def type_name(self) -> str:
        return self.attribute

    @property
    def result(self) -> WorldObject:
        return self.subject.with_(**{self.attribute: self.value})

    def subjects(self) -> tuple[WorldObject, ...]:
        return (self.subject,)

    def _change(self, scene: Scene) -> Scene:
        return scene.replace_object(self.subject, self.result)

    def inverse(self) -> AtomicEdit:
        return ChangeAttribute(self.result, self.attribute, getattr(self.subject, self.attribute))

    def near_misses(self, scene: Scene) -> list[AtomicEdit]:
        wrong_value = [
            ChangeAttribute(self.subject, self.attribute, value)
            for value in APPEARANCE[self.attribute]
            if value not in (self.value, getattr(self.subject, self.attribute))
        ]
        others = [obj for obj in scene.objects if obj != self.subject]
        return [*wrong_value, *(ChangeAttribute(obj, self.attribute, self.value) for obj in others)]

    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        slots = {"ref": refer(self.subject, scenes, rng), "value": value_word(self.attribute, self.value, rng)}
        if self.attribute == "style":
            return f"style:{self.value}", slots
        relative = rng is not None and rng.random() < RELATIVE_SIZE_PROBABILITY
        if self.attribute == "size" and self.subject.size == "medium" and relative:
            return ("size:larger" if self.value == "large" else "size:smaller"), slots
        return self.attribute, slots


@dataclass(frozen=True)
class AddObject(AtomicEdit):
    """Add an object in a free cell."""

    obj: WorldObject

    @property
    def type_name(self) -> str:
        return "add"

    def subjects(self) -> tuple[WorldObject, ...]:
        return ()

    def _change(self, scene: Scene) -> Scene | None:
        if len(scene.objects) >= MAX_OBJECTS or self.obj.cell not in scene.free_cells():
            return None
        return scene.with_object(self.obj)

    def inverse(self) -> AtomicEdit:
        return RemoveObject(self.obj)

    def near_misses(self, scene: Scene) -> list[AtomicEdit]:
        return [AddObject(variant) for variant in object_variants(self.obj)]

    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        described = f"a {object_words(self.obj, ADJECTIVE_ORDER, rng)}"
        return "add", {"object": described, "location": static_location(self.obj.cell, rng)}


@dataclass(frozen=True)
class RemoveObject(AtomicEdit):
    """Remove an object (never the last one)."""

    subject: WorldObject

    @property
    def type_name(self) -> str:
        return "remove"

    def subjects(self) -> tuple[WorldObject, ...]:
        return (self.subject,)

    def _change(self, scene: Scene) -> Scene | None:
        return scene.without(self.subject) if len(scene.objects) > 1 else None

    def inverse(self) -> AtomicEdit:
        return AddObject(self.subject)

    def near_misses(self, scene: Scene) -> list[AtomicEdit]:
        return [RemoveObject(obj) for obj in scene.objects if obj != self.subject]

    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        return "remove", {"ref": refer(self.subject, scenes, rng)}


@dataclass(frozen=True)
class MoveObject(AtomicEdit):
    """Move an object to a free cell."""

    subject: WorldObject
    cell: int

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be in 0..{len(CELLS) - 1}, got {self.cell!r}")

    @property
    def type_name(self) -> str:
        return "move"

    def subjects(self) -> tuple[WorldObject, ...]:
        return (self.subject,)

    def _change(self, scene: Scene) -> Scene | None:
        if self.cell not in scene.free_cells():
            return None
        return scene.replace_object(self.subject, self.subject.with_(cell=self.cell))

    def inverse(self) -> AtomicEdit:
        return MoveObject(self.subject.with_(cell=self.cell), self.subject.cell)

    def near_misses(self, scene: Scene) -> list[AtomicEdit]:
        wrong_cell = [MoveObject(self.subject, cell) for cell in CELLS if cell not in (self.cell, self.subject.cell)]
        return [*wrong_cell, *(MoveObject(obj, self.cell) for obj in scene.objects if obj != self.subject)]

    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        slots = {
            "ref": refer(self.subject, scenes, rng),
            "destination": target_location(self.cell, rng),
            "location": static_location(self.cell, rng),
        }
        return "move", slots


@dataclass(frozen=True)
class SwapObjects(AtomicEdit):
    """Exchange the cells of two objects."""

    first: WorldObject
    second: WorldObject

    @property
    def type_name(self) -> str:
        return "swap"

    def subjects(self) -> tuple[WorldObject, ...]:
        return (self.first, self.second)

    def _change(self, scene: Scene) -> Scene | None:
        if self.first == self.second:
            return None
        rest = tuple(obj for obj in scene.objects if obj not in (self.first, self.second))
        return Scene((*rest, self.first.with_(cell=self.second.cell), self.second.with_(cell=self.first.cell)))

    def inverse(self) -> AtomicEdit:
        return SwapObjects(self.first.with_(cell=self.second.cell), self.second.with_(cell=self.first.cell))

    def near_misses(self, scene: Scene) -> list[AtomicEdit]:
        pairs = [pair for pair in combinations(scene.objects, 2) if set(pair) != {self.first, self.second}]
        return [SwapObjects(*pair) for pair in pairs]

    def _slots(self, scenes: tuple[Scene, ...], rng: random.Random | None) -> tuple[str, dict[str, str]]:
        pair = [self.first, self.second]
        if rng is not None:
            rng.shuffle(pair)
        return "swap", {"ref": refer(pair[0], scenes, rng), "other": refer(pair[1], scenes, rng)}


@dataclass(frozen=True)
class ComposeEdits(Edit):
    """Two atomic edits on different objects, applied in order ("make the circle blue and remove the star")."""

    first: AtomicEdit
    second: AtomicEdit

    def __post_init__(self) -> None:
        if not isinstance(self.first, AtomicEdit) or not isinstance(self.second, AtomicEdit):
            raise ValueError("a composition is made of two atomic edits")

    @property
    def type_name(self) -> str:
        return "compose"

    def subjects(self) -> tuple[WorldObject, ...]:
        return (*self.first.subjects(), *self.second.subjects())

    def _change(self, scene: Scene) -> Scene | None:
        if set(self.first.subjects()) & set(self.second.subjects()):
            return None
        middle = self.first.apply(scene)
        return None if middle is None else self.second.apply(middle)

    def inverse(self) -> Edit:
        return ComposeEdits(self.second.inverse(), self.first.inverse())

    def near_misses(self, scene: Scene) -> list[Edit]:
        """The edit half done, or with one half replaced by one of its near misses."""
        return [
            self.first,
            self.second,
            *(ComposeEdits(miss, self.second) for miss in self.first.near_misses(scene)),
            *(ComposeEdits(self.first, miss) for miss in self.second.near_misses(scene)),
        ]

    def describe(
        self,
        scene: Scene,
        rng: random.Random | None = None,
        *,
        imperative: bool = False,
        context: tuple[Scene, ...] = (),
    ) -> str:
        """Both parts as commands, joined by "and" / "then"; references are unambiguous before and after the
        first part."""
        middle = self.first.apply(scene)
        if middle is None:
            raise ValueError("the composition does not apply to this scene")
        first = self.first.describe(scene, rng, imperative=True, context=context)
        second = self.second.describe(scene, rng, imperative=True, context=(*context, middle))
        return first + (COMPOSE_JOINERS[0] if rng is None else rng.choice(COMPOSE_JOINERS)) + second


def _sample_atomic(scene: Scene, rng: random.Random, edit_type: str) -> AtomicEdit | None:
    """A random applicable edit of one atomic type on `scene`, or None when that type cannot apply."""
    objects = scene.objects
    if edit_type in APPEARANCE:
        subject = rng.choice(objects)
        values = [value for value in APPEARANCE[edit_type] if value != getattr(subject, edit_type)]
        return ChangeAttribute(subject, edit_type, rng.choice(values))
    if edit_type == "add":
        return AddObject(sample_object(rng, rng.choice(scene.free_cells()))) if len(objects) < MAX_OBJECTS else None
    if edit_type == "remove":
        return RemoveObject(rng.choice(objects)) if len(objects) > 1 else None
    if edit_type == "move":
        return MoveObject(rng.choice(objects), rng.choice(scene.free_cells()))
    pairs = [(a, b) for a, b in combinations(objects, 2) if a.with_(cell=b.cell) != b]
    return SwapObjects(*rng.choice(pairs)) if pairs else None


def sample_edit(scene: Scene, rng: random.Random, edit_type: str | None = None) -> Edit | None:
    """A random edit that applies to `scene` (of `edit_type`, else of a uniformly drawn type); None when the
    drawn type cannot apply (adding to a full scene, removing the only object, ...)."""
    if edit_type is None:
        edit_type = rng.choice(EDIT_TYPES)
    if edit_type not in EDIT_TYPES:
        raise ValueError(f"edit_type must be one of {EDIT_TYPES}, got {edit_type!r}")
    if edit_type != "compose":
        return _sample_atomic(scene, rng, edit_type)
    for _ in range(COMPOSE_ATTEMPTS):
        first = _sample_atomic(scene, rng, rng.choice(ATOMIC_EDIT_TYPES))
        second = _sample_atomic(scene, rng, rng.choice(ATOMIC_EDIT_TYPES))
        if first is not None and second is not None:
            edit = ComposeEdits(first, second)
            if edit.apply(scene) is not None:
                return edit
    return None


def edit_templates() -> list[str]:
    """Every modification template and joiner (for the world vocabulary)."""
    return [template for pair in TEMPLATES.values() for group in pair for template in group] + list(COMPOSE_JOINERS)
