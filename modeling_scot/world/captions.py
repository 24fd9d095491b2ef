"""Captions that name every object of a scene with all its attributes and its cell, their parser, and looser
partial captions (some objects, some details) with a check of what they state."""

from __future__ import annotations

import random
import re
from itertools import permutations

from .lexicon import ADJECTIVE_ORDER, LOCATION_TO_CELL, WORD_TO_VALUE, object_words, static_location
from .scene import Scene, WorldObject

PREFIXES: tuple[str, ...] = ("", "a picture of ", "an image of ", "a scene with ", "there is ")
JOINERS: tuple[str, ...] = (" and ", " with ")
RELATIONS: dict[str, str] = {"above": "above", "below": "below", "left": "to the left of", "right": "to the right of"}
"""Relation joiners for two-object captions: "a red circle in the top left above a blue square in the center"."""
RELATION_PROBABILITY = 0.5
MAX_CAPTION_WORDS = 32

_WORD = re.compile(r"[a-z]+")


def _clause(obj: WorldObject, rng: random.Random | None) -> str:
    return f"a {object_words(obj, ADJECTIVE_ORDER, rng)} {static_location(obj.cell, rng)}"


def relations(first: WorldObject, second: WorldObject) -> list[str]:
    """The relation words that hold from `first` to `second` ("above", "left", ...), by rows and columns."""
    found = []
    if first.row != second.row:
        found.append("above" if first.row < second.row else "below")
    if first.column != second.column:
        found.append("left" if first.column < second.column else "right")
    return found


def _joiner(first: WorldObject, second: WorldObject, count: int, rng: random.Random) -> str:
    true_relations = relations(first, second) if count == 2 else []
    if true_relations and rng.random() < RELATION_PROBABILITY:
        return f" {RELATIONS[rng.choice(true_relations)]} "
    return rng.choice(JOINERS)


def caption(scene: Scene, rng: random.Random | None = None) -> str:
    """Describe `scene`. Without `rng` the canonical caption ("a small solid red circle in the top left and a
    large outlined blue square in the center", objects in cell order); with `rng` a paraphrase: object order,
    synonyms, adjective order, prefix, joiners and (for two objects) a spatial relation vary. At most
    `MAX_CAPTION_WORDS` words, no punctuation."""
    if rng is None:
        return " and ".join(_clause(obj, None) for obj in scene.objects)
    objects = list(scene.objects)
    rng.shuffle(objects)
    text = _clause(objects[0], rng)
    for previous, obj in zip(objects, objects[1:]):
        text += _joiner(previous, obj, len(objects), rng) + _clause(obj, rng)
    return rng.choice(PREFIXES) + text


PARTIAL_DETAILS: tuple[str, ...] = ("size", "style", "colour", "cell")
"""What a partial caption may state of an object besides its shape."""
PartialStatement = tuple[tuple[WorldObject, tuple[str, ...]], ...]
"""The objects a partial caption mentions, each with the details it states (the shape is always stated)."""


def partial_caption(scene: Scene, rng: random.Random, detail_probability: float = 0.5) -> tuple[str, PartialStatement]:
    """A caption as loose as web alt text: a random non-empty subset of the objects, each named by its shape
    and each other detail with probability `detail_probability` ("a circle and a red square at the top").
    Returns the text and what it states, for [`states_truly`]."""
    chosen = rng.sample(list(scene.objects), rng.randint(1, len(scene.objects)))
    statement = tuple((obj, tuple(d for d in PARTIAL_DETAILS if rng.random() < detail_probability)) for obj in chosen)
    clauses = []
    for obj, details in statement:
        clause = f"a {object_words(obj, details, rng)}"
        clauses.append(f"{clause} {static_location(obj.cell, rng)}" if "cell" in details else clause)
    return rng.choice(PREFIXES) + rng.choice(JOINERS).join(clauses), statement


def states_truly(statement: PartialStatement, scene: Scene) -> bool:
    """Whether distinct objects of `scene` have the shape and the stated details of every mentioned object."""
    return any(
        all(mentioned.matches(obj, details) for obj, (mentioned, details) in zip(assignment, statement))
        for assignment in permutations(scene.objects, len(statement))
    )


def words(text: str) -> list[str]:
    """The lowercase words of a text, as the world's word-level tokenizer splits it."""
    return _WORD.findall(text.lower())


def read_attributes(text: str) -> dict[str, str | int]:
    """The attributes a phrase names: {"size": "small", "colour": "red", "shape": "circle", "cell": 0} for
    "the small red circle in the top left". Raises ValueError if an attribute is named twice."""
    tokens = words(text)
    found: dict[str, str | int] = {}

    def put(name: str, value: str | int) -> None:
        if name in found:
            raise ValueError(f"{text!r} names the {name} twice")
        found[name] = value

    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in WORD_TO_VALUE:
            put(*WORD_TO_VALUE[token])
        elif token == "the":
            for length in (2, 1):
                name = tuple(tokens[index + 1 : index + 1 + length])
                if len(name) == length and name in LOCATION_TO_CELL:
                    put("cell", LOCATION_TO_CELL[name])
                    index += length
                    break
        index += 1
    return found


def _split_clauses(text: str) -> list[str]:
    """Split a caption at its joiners ("and", "with", "above", "below", "to the left of", "to the right of")."""
    clauses: list[list[str]] = [[]]
    for token in words(text):
        if token == "of" and clauses[-1][-3:-1] == ["to", "the"] and clauses[-1][-1] in ("left", "right"):
            del clauses[-1][-3:]
            clauses.append([])
        elif token in ("and", "with", "above", "below"):
            clauses.append([])
        else:
            clauses[-1].append(token)
    return [" ".join(clause) for clause in clauses]


def parse_caption(text: str) -> Scene:
    """Inverse of [`caption`] for any of its paraphrases; raises ValueError for a text that does not fully
    describe a scene."""
    objects = []
    for clause in _split_clauses(text):
        found = read_attributes(clause)
        if not found:
            continue
        missing = {"shape", "colour", "size", "style", "cell"} - set(found)
        if missing:
            raise ValueError(f"{text!r}: the object {clause!r} lacks {sorted(missing)}")
        objects.append(WorldObject(**found))
    if not objects:
        raise ValueError(f"{text!r} describes no object")
    return Scene(tuple(objects))
