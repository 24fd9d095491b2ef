"""Words for attribute values and grid cells, with synonyms; the first word of each entry is the canonical one."""

from __future__ import annotations

import random

from .scene import APPEARANCE, WorldObject

ATTRIBUTE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {shape: (shape,) for shape in APPEARANCE["shape"]},
    "colour": {colour: (colour,) for colour in APPEARANCE["colour"]},
    "size": {"small": ("small", "tiny", "little"), "medium": ("medium",), "large": ("large", "big")},
    "style": {"solid": ("solid", "filled"), "outlined": ("outlined", "hollow")},
}

LOCATION_WORDS: dict[int, tuple[str, ...]] = {
    0: ("top left", "upper left"),
    1: ("top middle", "top"),
    2: ("top right", "upper right"),
    3: ("middle left", "left"),
    4: ("center", "middle"),
    5: ("middle right", "right"),
    6: ("bottom left", "lower left"),
    7: ("bottom middle", "bottom"),
    8: ("bottom right", "lower right"),
}
"""Names of the cells; a cell is said "in the <name>" ("at the top", "on the left") and reached "to the <name>"."""

_PREPOSITIONS = {"top": ("at",), "bottom": ("at",), "left": ("on",), "right": ("on",), "middle": ("in",)}
_DEFAULT_PREPOSITIONS = ("in", "at")
ADJECTIVE_ORDER: tuple[str, ...] = ("size", "style", "colour")
"""The canonical order of adjectives before the shape noun; paraphrases may use `ALTERNATIVE_ORDER`."""
ALTERNATIVE_ORDER: tuple[str, ...] = ("size", "colour", "style")

WORD_TO_VALUE: dict[str, tuple[str, str]] = {
    word: (attribute, value)
    for attribute, table in ATTRIBUTE_WORDS.items()
    for value, words in table.items()
    for word in words
}
"""Reverse map: a word to the (attribute, value) it names."""
LOCATION_TO_CELL: dict[tuple[str, ...], int] = {
    tuple(name.split()): cell for cell, names in LOCATION_WORDS.items() for name in names
}

LEXICON_TEXTS: tuple[str, ...] = (
    *WORD_TO_VALUE,
    *(" ".join(name) for name in LOCATION_TO_CELL),
    *_DEFAULT_PREPOSITIONS,
    *(preposition for prepositions in _PREPOSITIONS.values() for preposition in prepositions),
    "to the",
)
"""Every word this module can produce (for the world vocabulary)."""


def _pick(options: tuple[str, ...], rng: random.Random | None) -> str:
    return options[0] if rng is None else rng.choice(options)


def value_word(attribute: str, value: str, rng: random.Random | None = None) -> str:
    """The word for an attribute value: canonical without `rng`, else a random synonym."""
    return _pick(ATTRIBUTE_WORDS[attribute][value], rng)


def static_location(cell: int, rng: random.Random | None = None) -> str:
    """Where a cell is: "in the top left", "on the left", "at the top" (canonical: "in the <first name>")."""
    name = _pick(LOCATION_WORDS[cell], rng)
    preposition = _pick(_PREPOSITIONS.get(name, _DEFAULT_PREPOSITIONS), rng)
    return f"{preposition} the {name}"


def target_location(cell: int, rng: random.Random | None = None) -> str:
    """Where something goes: "to the top left", "to the left"."""
    return f"to the {_pick(LOCATION_WORDS[cell], rng)}"


def object_words(obj: WorldObject, attributes: tuple[str, ...], rng: random.Random | None = None) -> str:
    """Adjectives for `attributes` of `obj` then its shape noun: "small red circle" (no article, no location).

    With `rng`, synonyms and either adjective order ("small red outlined circle").
    """
    order = ADJECTIVE_ORDER if rng is None else rng.choice((ADJECTIVE_ORDER, ALTERNATIVE_ORDER))
    words = [value_word(name, getattr(obj, name), rng) for name in order if name in attributes]
    return " ".join([*words, value_word("shape", obj.shape, rng)])
