"""The scene grammar: 1 to 3 objects (shape, colour, size, style) in distinct cells of a 3 x 3 grid."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from itertools import combinations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SIZES: tuple[str, ...] = ("small", "medium", "large")
STYLES: tuple[str, ...] = ("solid", "outlined")
APPEARANCE: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "style": STYLES}
"""The appearance attributes of an object and their values; an object also has a cell."""

GRID_SIZE = 3
CELLS: tuple[int, ...] = tuple(range(GRID_SIZE * GRID_SIZE))
"""Cells numbered row by row: 0 is the top left, 4 the center, 8 the bottom right."""
MAX_OBJECTS = 3
SCENE_ID_PREFIX = "scene"


@dataclass(frozen=True)
class WorldObject:
    """One object: its appearance and the grid cell it sits in."""

    shape: str
    colour: str
    size: str
    style: str
    cell: int

    def __post_init__(self) -> None:
        for attribute, values in APPEARANCE.items():
            if getattr(self, attribute) not in values:
                raise ValueError(f"{attribute} must be one of {values}, got {getattr(self, attribute)!r}")
        if type(self.cell) is not int or self.cell not in CELLS:
            raise ValueError(f"cell must be an int in 0..{len(CELLS) - 1}, got {self.cell!r}")

    @property
    def row(self) -> int:
        return self.cell // GRID_SIZE

    @property
    def column(self) -> int:
        return self.cell % GRID_SIZE

    def with_(self, **changes: str | int) -> WorldObject:
        """A copy with some attributes (or the cell) changed."""
        return replace(self, **changes)

    def matches(self, other: WorldObject, details: tuple[str, ...]) -> bool:
        """Whether `other` has this object's shape and its values of `details` (attribute names or "cell")."""
        return all(getattr(self, name) == getattr(other, name) for name in ("shape", *details))


@dataclass(frozen=True)
class Scene:
    """A canonical scene: its objects sorted by cell, so equal scenes compare (and hash) equal."""

    objects: tuple[WorldObject, ...]

    def __post_init__(self) -> None:
        objects = tuple(sorted(self.objects, key=lambda obj: obj.cell))
        if not 1 <= len(objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects, got {len(objects)}")
        if len({obj.cell for obj in objects}) != len(objects):
            raise ValueError(f"two objects share a cell: {objects}")
        object.__setattr__(self, "objects", objects)

    def free_cells(self) -> tuple[int, ...]:
        taken = [obj.cell for obj in self.objects]
        return tuple(cell for cell in CELLS if cell not in taken)

    def replace_object(self, old: WorldObject, new: WorldObject) -> Scene:
        """The scene with `old` replaced by `new`."""
        self._require(old)
        return Scene(tuple(new if obj == old else obj for obj in self.objects))

    def without(self, old: WorldObject) -> Scene:
        self._require(old)
        return Scene(tuple(obj for obj in self.objects if obj != old))

    def with_object(self, new: WorldObject) -> Scene:
        return Scene(self.objects + (new,))

    def _require(self, obj: WorldObject) -> None:
        if obj not in self.objects:
            raise ValueError(f"{obj} is not in the scene")


def scene_id(scene: Scene) -> str:
    """A readable, filename-safe id that names the scene exactly, e.g. ``scene_0-circle-red-small-solid``."""
    parts = [f"{obj.cell}-{obj.shape}-{obj.colour}-{obj.size}-{obj.style}" for obj in scene.objects]
    return "_".join([SCENE_ID_PREFIX, *parts])


def scene_from_id(text: str) -> Scene:
    """Inverse of [`scene_id`]; raises ValueError for a string that is not a scene id."""
    prefix, *parts = text.split("_")
    try:
        if prefix != SCENE_ID_PREFIX:
            raise ValueError("wrong prefix")
        objects = []
        for part in parts:
            cell, shape, colour, size, style = part.split("-")
            objects.append(WorldObject(shape, colour, size, style, int(cell)))
        return Scene(tuple(objects))
    except ValueError as error:
        raise ValueError(f"{text!r} is not a world scene id ({error})") from None


def derived_rng(*parts: object) -> random.Random:
    """A `random.Random` seeded from a stable hash of `parts` (the same in every process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def sample_object(rng: random.Random, cell: int) -> WorldObject:
    """An object with uniformly drawn appearance in `cell`."""
    return WorldObject(*(rng.choice(values) for values in APPEARANCE.values()), cell=cell)


def sample_scene(rng: random.Random, min_objects: int = 1, max_objects: int = MAX_OBJECTS) -> Scene:
    """A scene with a uniform number of objects in `[min_objects, max_objects]` in distinct random cells."""
    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}, {max_objects}")
    cells = rng.sample(CELLS, rng.randint(min_objects, max_objects))
    return Scene(tuple(sample_object(rng, cell) for cell in cells))


def object_variants(obj: WorldObject) -> list[WorldObject]:
    """Every object that differs from `obj` in exactly one attribute or in its cell."""
    variants = [
        obj.with_(**{name: value})
        for name, values in APPEARANCE.items()
        for value in values
        if value != getattr(obj, name)
    ]
    return variants + [obj.with_(cell=cell) for cell in CELLS if cell != obj.cell]


def one_off_variants(scene: Scene) -> list[Scene]:
    """Every scene equal to `scene` except for one attribute (or the cell) of one object."""
    free = scene.free_cells()
    return [
        scene.replace_object(obj, variant)
        for obj in scene.objects
        for variant in object_variants(obj)
        if variant.cell == obj.cell or variant.cell in free
    ]


def binding_variants(scene: Scene) -> list[Scene]:
    """Every scene made from `scene` by two objects trading one attribute (or their cells) on which they
    differ: the same words in the caption, bound to other objects ("a red circle and a blue square" ->
    "a blue circle and a red square")."""
    variants: dict[Scene, None] = {}
    for first, second in combinations(scene.objects, 2):
        for name in (*APPEARANCE, "cell"):
            traded = {first: first.with_(**{name: getattr(second, name)}), second: second.with_(**{name: getattr(first, name)})}
            if set(traded.values()) != {first, second}:
                variants.setdefault(Scene(tuple(traded.get(obj, obj) for obj in scene.objects)))
    return list(variants)
