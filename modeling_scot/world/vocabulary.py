"""The closed vocabulary of the world: every word a caption, modification or hard negative can contain."""

from __future__ import annotations

import re

from .captions import JOINERS, PREFIXES, RELATIONS, words
from .edits import edit_templates
from .lexicon import LEXICON_TEXTS

_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def world_vocabulary() -> list[str]:
    """Sorted lowercase words (texts hold no punctuation), for the world's word-level tokenizer."""
    articles = "a"  # every object phrase starts with "a"
    texts = [*LEXICON_TEXTS, *PREFIXES, *JOINERS, *RELATIONS.values(), *edit_templates(), articles]
    return sorted({word for text in texts for word in words(_PLACEHOLDER.sub(" ", text))})
