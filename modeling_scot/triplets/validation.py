"""Parse and check triplets: LLM answers become records or rejections with a reason code.

An answer must hold exactly one JSON object (a ```json fence or prose around it is tolerated) with a
non-empty `modification`, a `modified_caption` that differs from the caption after normalisation
(NFKC, case-folded, punctuation and extra spaces removed), both within length bounds and neither copied
from the prompt. Hard negatives are cleaned: strings only, none equal to the caption or the modified
caption, no repeats, at most k. [`Deduplicator`] drops repeated (image, modification, modified caption).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from .backend import CaptionRequest
from .prompts import prompt_texts
from .record import TripletRecord

REJECTION_REASONS: dict[str, str] = {
    "request_failed": "no answer: the request failed after its retries",
    "invalid_json": "the answer is not exactly one JSON object",
    "invalid_text": "the answer holds characters that are not valid Unicode (lone surrogates)",
    "missing_field": "a required field is missing or has the wrong type",
    "empty_caption": "the image's caption is empty",
    "empty_modification": "the modification is empty",
    "empty_modified_caption": "the modified caption is empty",
    "unchanged_caption": "the modified caption equals the caption after normalisation",
    "too_long": "a field is longer than its bound",
    "prompt_copy": "the answer copies the prompt or its examples",
    "duplicate": "the same image, modification and modified caption were accepted before",
    "skipped": "the backend wrote no triplet for this image",
}
"""Every reason code a rejected attempt can carry, with its meaning."""

_NON_WORD = re.compile(r"[\W_]+")
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)


class Rejected(ValueError):
    """A triplet was rejected; `reason` is a key of `REJECTION_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Length bounds of a triplet's texts, in words, and of a raw answer, in characters."""

    max_modification_words: int = 40
    max_caption_words: int = 80
    max_answer_chars: int = 20000

    def to_dict(self) -> dict[str, int]:
        """The bounds as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one request: a record, or the reason (and detail) of its rejection, and the raw answer."""

    request: CaptionRequest
    record: TripletRecord | None
    reason: str | None = None
    detail: str = ""
    raw_response: str | None = None


def normalize_text(text: str) -> str:
    """The comparison form of a text: NFKC, case-folded, punctuation removed, single spaces."""
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def is_unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """`text` with any lone surrogate written as a backslash escape, so that it can be stored as UTF-8."""
    return text if is_unicode(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_objects(text: str) -> list[dict]:
    decoder = json.JSONDecoder()
    found, start = [], text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        except RecursionError:
            raise Rejected("invalid_json", "the answer nests JSON too deeply") from None
        found.append(value)
        start = text.find("{", end)
    return found


def extract_json_object(text: str) -> dict:
    """The one JSON object in `text` (inside ```json fences when there are any); raises `Rejected` otherwise."""
    fenced = _FENCE.findall(text)
    objects = [obj for chunk in (fenced or [text]) for obj in _json_objects(chunk)]
    if len(objects) != 1:
        raise Rejected("invalid_json", f"found {len(objects)} JSON objects, expected exactly 1")
    return objects[0]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _text_field(answer: dict, key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str):
        raise Rejected("missing_field", f"{key!r} is missing or not a string")
    if not is_unicode(value):
        raise Rejected("invalid_text", f"{key!r} holds a lone surrogate")
    return _one_line(value)


@dataclass
class TripletValidator:
    """Turns raw answers into records and checks records, with `limits`, keeping at most `num_hard_negatives`.

    With `forbid_prompt_copies` an answer that repeats a few-shot example or an instruction line of the prompt
    is rejected (`prompt_copy`); LLM backends set it, rule-written triplets need not.
    """

    num_hard_negatives: int = 3
    limits: Limits = field(default_factory=Limits)
    forbid_prompt_copies: bool = True

    def __post_init__(self) -> None:
        if self.num_hard_negatives < 0:
            raise ValueError(f"num_hard_negatives must be >= 0, got {self.num_hard_negatives}")
        examples, instructions = prompt_texts() if self.forbid_prompt_copies else ([], [])
        self._examples = frozenset(normalize_text(text) for text in examples)
        self._instructions = tuple(normalize_text(text) for text in instructions)

    def _copied(self, text: str, caption: str) -> bool:
        return (text in self._examples and text != caption) or any(line in text for line in self._instructions)

    def check(self, record: TripletRecord) -> None:
        """Raise `Rejected` unless `record` has a caption, a modification and a changed, bounded modified caption."""
        caption = normalize_text(record.caption)
        modification, modified = normalize_text(record.modification), normalize_text(record.modified_caption)
        if not caption:
            raise Rejected("empty_caption", "the caption is empty")
        if not modification:
            raise Rejected("empty_modification", "the modification is empty")
        if not modified:
            raise Rejected("empty_modified_caption", "the modified caption is empty")
        if modified == caption:
            raise Rejected("unchanged_caption", "the modified caption equals the caption")
        for name, text, bound in (
            ("modification", record.modification, self.limits.max_modification_words),
            ("modified_caption", record.modified_caption, self.limits.max_caption_words),
        ):
            if len(text.split()) > bound:
                raise Rejected("too_long", f"{name} has {len(text.split())} words, the bound is {bound}")
        if self._copied(modification, caption) or self._copied(modified, caption):
            raise Rejected("prompt_copy", "the answer repeats the prompt")

    def _hard_negatives(self, answer: dict, caption: str, modified_caption: str) -> list[str]:
        if self.num_hard_negatives == 0:
            return []
        values = answer.get("hard_negatives")
        if not isinstance(values, list):
            raise Rejected("missing_field", "'hard_negatives' is missing or not a list")
        seen = {normalize_text(caption), normalize_text(modified_caption)}
        kept = []
        for value in values:
            text = _one_line(value) if isinstance(value, str) and is_unicode(value) else ""
            key = normalize_text(text)
            if not key or key in seen or self._copied(key, ""):
                continue
            if len(text.split()) > self.limits.max_caption_words:
                continue
            seen.add(key)
            kept.append(text)
        return kept[: self.num_hard_negatives]

    def parse(self, raw: str, request: CaptionRequest) -> TripletRecord:
        """The checked record that the raw answer `raw` gives for `request`; raises `Rejected`."""
        if len(raw) > self.limits.max_answer_chars:
            raise Rejected("too_long", f"the answer has {len(raw)} characters, the bound is {self.limits.max_answer_chars}")
        if not is_unicode(raw):
            raise Rejected("invalid_text", "the answer holds a lone surrogate")
        answer = extract_json_object(raw)
        record = TripletRecord(
            source_id=request.source_id,
            image=request.image,
            caption=request.caption,
            modification=_text_field(answer, "modification"),
            modified_caption=_text_field(answer, "modified_caption"),
        )
        self.check(record)
        record.hard_negatives = self._hard_negatives(answer, record.caption, record.modified_caption)
        return record


class Deduplicator:
    """Remembers accepted triplets by a 16-byte hash of (source id, normalised modification and modified caption)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    @staticmethod
    def key(source_id: str, modification: str, modified_caption: str) -> bytes:
        """The de-duplication key of a triplet."""
        text = "\0".join((source_id, normalize_text(modification), normalize_text(modified_caption)))
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def add(self, source_id: str, modification: str, modified_caption: str) -> bool:
        """Remember the triplet; False when it was already seen."""
        key = self.key(source_id, modification, modified_caption)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def __len__(self) -> int:
        return len(self._seen)


__all__ = [
    "REJECTION_REASONS",
    "Attempt",
    "Deduplicator",
    "Limits",
    "Rejected",
    "TripletValidator",
    "extract_json_object",
    "is_unicode",
    "normalize_text",
    "storable",
]
