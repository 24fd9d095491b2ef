"""Keyword spans of captions and the token ids of texts in which placeholders stand for some of their words.

A keyword span is a maximal run of content words (nouns, adjectives) with the determiners before them ("a red
bike", "the beach"): what LinCIR's self-masking replaces by one pseudo-token. Spans come from, in this order
of preference,
- a lexicon, when one is given (the built-in world's: its attribute and location words, `WORLD_LEXICON`),
- spaCy's part-of-speech tagger, when `spacy` and its `en_core_web_sm` model are installed,
- a heuristic that needs no model: every word that is not a stop word (pronouns, prepositions, conjunctions,
  auxiliaries, common caption verbs and adverbs: closed lists below) is a content word.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..world.lexicon import ATTRIBUTE_WORDS, LOCATION_WORDS

Span = tuple[int, int]
"""Character offsets [start, end) of a keyword span in its caption."""

DETERMINERS = frozenset(
    "a an the this these those some any each every no another both either neither all several many few my your "
    "his her its our their one two three four five six seven eight nine ten".split()
)
STOP_WORDS = frozenset(
    # prepositions
    "in on at of with without to from by for into onto over under above below behind beside besides between "
    "near next through across along around against among inside outside upon up down off out toward towards "
    "via about after before during beneath underneath within like "
    # conjunctions, pronouns, relatives
    "and or but nor so yet as than if because while that which who whom whose what where when how why there "
    "here it its it's he him she they them we us you i me his hers itself themselves "
    # auxiliaries and modals
    "is are was were be been being am has have had do does did can could will would shall should may might must "
    # adverbs
    "not very too also just only then now really more most less together "
    # verbs common in captions
    "sitting sits sit standing stands stand holding holds hold riding rides ride walking walks walk looking "
    "looks look lying lies laying lays playing plays play wearing wears wear eating eats eat running runs "
    "flying flies driving drives carrying carries hanging hangs waiting waits watching watches using uses "
    "talking talks posing poses jumping jumps swimming swims making makes taking takes getting gets going goes "
    "sleeping sleeps shows showing parked made seen shown".split()
)
"""Words that never belong to a keyword span in the heuristic (closed lists: it has no tagger)."""

WORLD_LEXICON = frozenset(
    [word for table in ATTRIBUTE_WORDS.values() for synonyms in table.values() for word in synonyms]
    + [word for names in LOCATION_WORDS.values() for name in names for word in name.split()]
)
"""The built-in world's content words: shapes, colours, sizes, styles and the words of cell names."""

SPACY_MODEL = "en_core_web_sm"
_CONTENT_TAGS = frozenset({"NOUN", "PROPN", "ADJ"})
_DETERMINER_TAGS = frozenset({"DET", "NUM"})
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_GAP = re.compile(r"\s*")

Word = tuple[int, int, str]
"""(start, end, kind) of a word; kind is "content", "determiner" or "other"."""


def _runs(text: str, words: Sequence[Word]) -> list[Span]:
    """Maximal runs of determiners then content words, adjacent but for white space; a run needs a content word,
    and a determiner after a content word starts a new run."""
    spans: list[Span] = []
    start = last_content = None
    previous_end, previous_kind = -1, "other"
    for begin, end, kind in words:
        adjacent = previous_end >= 0 and _GAP.fullmatch(text, previous_end, begin) is not None
        continues = adjacent and start is not None and not (kind == "determiner" and previous_kind == "content")
        if not continues or kind == "other":
            if start is not None and last_content is not None:
                spans.append((start, last_content))
            start = last_content = None
        if kind != "other":
            start = begin if start is None else start
            last_content = end if kind == "content" else last_content
        previous_end, previous_kind = end, kind
    if start is not None and last_content is not None:
        spans.append((start, last_content))
    return spans


def _kind(word: str, content: Collection[str] | None) -> str:
    lower = word.lower()
    if lower in DETERMINERS or lower.isdigit():
        return "determiner"
    if content is not None:
        return "content" if lower in content else "other"
    return "other" if lower in STOP_WORDS else "content"


def lexicon_keyword_spans(caption: str, lexicon: Collection[str]) -> list[Span]:
    """Spans of runs of `lexicon` words (lowercase words; a phrase counts as its words) with their determiners."""
    content = {word for entry in lexicon for word in entry.lower().split()}
    return _runs(caption, [(m.start(), m.end(), _kind(m.group(), content)) for m in _WORD.finditer(caption)])


def heuristic_keyword_spans(caption: str) -> list[Span]:
    """Spans of runs of words outside `STOP_WORDS`, with their determiners; punctuation ends a run."""
    return _runs(caption, [(m.start(), m.end(), _kind(m.group(), None)) for m in _WORD.finditer(caption)])


@lru_cache(maxsize=1)
def spacy_pipeline():
    """spaCy's English pipeline when `spacy` and `en_core_web_sm` are installed, else None."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL, disable=["parser", "ner", "lemmatizer"])
    except (ImportError, OSError):
        return None


def spacy_keyword_spans(caption: str, nlp) -> list[Span]:
    """Spans of runs of nouns, proper nouns and adjectives with their determiners and numerals, as tagged by `nlp`."""
    words = []
    for token in nlp(caption):
        kind = "content" if token.pos_ in _CONTENT_TAGS else "determiner" if token.pos_ in _DETERMINER_TAGS else "other"
        words.append((token.idx, token.idx + len(token.text), kind))
    return _runs(caption, words)


def keyword_spans(caption: str, lexicon: Collection[str] | None = None) -> list[Span]:
    """The keyword spans of `caption`, in order: from `lexicon` when given, else spaCy's tagger when installed,
    else [`heuristic_keyword_spans`]."""
    if lexicon is not None:
        return lexicon_keyword_spans(caption, lexicon)
    nlp = spacy_pipeline()
    return spacy_keyword_spans(caption, nlp) if nlp is not None else heuristic_keyword_spans(caption)


def masked_segments(text: str, spans: Sequence[Span]) -> list[str]:
    """The pieces of `text` around `spans` (sorted, not overlapping): a text with k spans gives k + 1 pieces, one
    placeholder standing between each two."""
    pieces, position = [], 0
    for start, end in spans:
        if not position <= start < end <= len(text):
            raise ValueError(f"span ({start}, {end}) of {text!r} is out of order, empty or outside the text")
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    return pieces


@dataclass
class PlaceholderBatch:
    """Token ids of texts with placeholders: `replace` (B, L) marks the placeholder positions, `truncated` lists the
    rows that were cut to the length limit. `attention_mask` is None for tokenizers that have none (SigLIP)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    replace: torch.Tensor
    truncated: list[int]

    def counts(self) -> torch.Tensor:
        """Placeholders per row."""
        return self.replace.sum(dim=1)


class PlaceholderTokenizer:
    """Token ids of texts given as pieces with one placeholder token between each two.

    Each piece is tokenised on its own (without special tokens; trailing white space dropped, leading white space
    kept, so that a word after a placeholder reads as a word start to tokenizers that mark one, such as Gemma's)
    and the ids are joined with the placeholder's id between them, inside the special tokens the tokenizer puts
    around a text. Too long a text is cut at
    `max_length` from its end; the placeholders before the cut are kept (`PlaceholderBatch.counts` tells how many
    survived). Padding follows the processor
    ("longest", or "max_length" for SigLIP-style towers that pool the last position).
    """

    def __init__(self, tokenizer, placeholder: str, max_length: int, padding: str = "longest"):
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        ids = tokenizer(placeholder, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"the placeholder {placeholder!r} must be one token of the tokenizer, it is {len(ids)}")
        self.tokenizer, self.placeholder_id, self.padding = tokenizer, ids[0], padding
        self.prefix, self.suffix = self._special_tokens()
        if max_length < len(self.prefix) + len(self.suffix) + 1:
            raise ValueError(f"max_length {max_length} leaves no room for a placeholder")
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.with_mask = "attention_mask" in getattr(tokenizer, "model_input_names", ["attention_mask"])

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after a text (found around a probe word)."""
        bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a")["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return full[:start], full[start + len(bare) :]
        raise ValueError(f"cannot find the text between the special tokens of {type(self.tokenizer).__name__}")

    def __call__(self, pieces_per_text: Sequence[Sequence[str]]) -> PlaceholderBatch:
        flat = [piece.rstrip() for pieces in pieces_per_text for piece in pieces]
        room = self.max_length - len(self.prefix) - len(self.suffix)
        # one token past the room is enough to see a cut, and keeps the tokenizer from warning about long pieces
        cut = {"add_special_tokens": False, "truncation": True, "max_length": room + 1}
        piece_ids = iter(self.tokenizer(flat, **cut)["input_ids"] if flat else [])
        rows, marks, truncated = [], [], []
        for row, pieces in enumerate(pieces_per_text):
            if not pieces:
                raise ValueError(f"text {row} has no pieces")
            ids, mark = [], []
            for number, _ in enumerate(pieces):
                if number:
                    ids.append(self.placeholder_id)
                    mark.append(True)
                part = next(piece_ids)
                ids.extend(part)
                mark.extend([False] * len(part))
            if len(ids) > room:
                truncated.append(row)
                ids, mark = ids[:room], mark[:room]
            rows.append(self.prefix + ids + self.suffix)
            marks.append([False] * len(self.prefix) + mark + [False] * len(self.suffix))
        width = self.max_length if self.padding == "max_length" else max(map(len, rows), default=0)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        replace = torch.zeros((len(rows), width), dtype=torch.bool)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (ids, mark) in enumerate(zip(rows, marks)):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            replace[row, : len(mark)] = torch.tensor(mark, dtype=torch.bool)
            mask[row, : len(ids)] = 1
        return PlaceholderBatch(input_ids, mask if self.with_mask else None, replace, truncated)


def masked_caption_ids(
    tokenizer: PlaceholderTokenizer, captions: Sequence[str], spans: Sequence[Sequence[Span]]
) -> PlaceholderBatch:
    """Token ids of `captions` with each of their keyword `spans` replaced by one placeholder token."""
    if len(captions) != len(spans):
        raise ValueError(f"{len(captions)} captions but {len(spans)} span lists")
    return tokenizer([masked_segments(caption, caption_spans) for caption, caption_spans in zip(captions, spans)])


__all__ = [
    "DETERMINERS",
    "STOP_WORDS",
    "SPACY_MODEL",
    "WORLD_LEXICON",
    "PlaceholderBatch",
    "PlaceholderTokenizer",
    "Span",
    "heuristic_keyword_spans",
    "keyword_spans",
    "lexicon_keyword_spans",
    "masked_caption_ids",
    "masked_segments",
    "spacy_keyword_spans",
    "spacy_pipeline",
]
