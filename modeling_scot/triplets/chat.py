"""What the LLM backends share: prompt each request, complete the chats, validate the answers."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .backend import CaptionRequest, TripletBackend
from .prompts import PROMPT_VERSION, build_messages
from .record import TripletRecord
from .validation import Attempt, Limits, Rejected, TripletValidator, storable

NOT_SENT = "not_sent"
"""The reason of an attempt whose request was never sent (a request cap was reached): not a rejection, retry later."""


@dataclass(frozen=True)
class Completion:
    """A chat completion: the answer `text`, or the `reason` (`request_failed` or `not_sent`) and `detail`."""

    text: str | None
    reason: str | None = None
    detail: str = ""


class ChatBackend(TripletBackend):
    """An LLM backend: asks a chat model for each request with the versioned prompt and validates its answer.

    Subclasses implement [`complete`]. Sampling is seeded per request from `seed`, the request's image, caption
    and variant, so that a rerun asks the same questions with the same seeds.
    """

    def __init__(
        self,
        model: str,
        *,
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_new_tokens: int = 512,
        seed: int = 0,
        num_hard_negatives: int = 3,
        limits: Limits | None = None,
    ) -> None:
        if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1:
            raise ValueError(
                f"need temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1, got {temperature}, {top_p}, {max_new_tokens}"
            )
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.num_hard_negatives = num_hard_negatives
        self.validator = TripletValidator(num_hard_negatives, limits or Limits())

    @abstractmethod
    def complete(self, conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int]) -> list[Completion]:
        """One completion per conversation, in order, each sampled with its seed."""

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "prompt_version": PROMPT_VERSION,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "num_hard_negatives": self.num_hard_negatives,
        }

    def request_seed(self, request: CaptionRequest) -> int:
        """The sampling seed of `request` (31 bits)."""
        text = "\0".join(map(str, (self.seed, request.source_id, request.caption, request.variant)))
        return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big") >> 1

    def _judge(self, request: CaptionRequest, completion: Completion) -> Attempt:
        if completion.text is None:
            return Attempt(request, None, completion.reason, completion.detail)
        try:
            record = self.validator.parse(completion.text, request)
        except Rejected as rejected:
            return Attempt(request, None, rejected.reason, rejected.detail, storable(completion.text))
        return Attempt(request, record, raw_response=completion.text)

    def attempt(self, requests: Sequence[CaptionRequest]) -> list[Attempt]:
        """One attempt per request, in order: the record or the rejection, with the raw answer."""
        asked = [request for request in requests if request.caption.strip()]
        completions = iter(
            self.complete(
                [build_messages(r.caption, r.variant, self.num_hard_negatives) for r in asked],
                [self.request_seed(r) for r in asked],
            )
        )
        return [
            self._judge(request, next(completions))
            if request.caption.strip()
            else Attempt(request, None, "empty_caption", "the caption is empty")
            for request in requests
        ]

    def generate(self, requests: Sequence[CaptionRequest]) -> list[TripletRecord | None]:
        return [attempt.record for attempt in self.attempt(requests)]


def attempt_triplets(
    backend: TripletBackend, requests: Sequence[CaptionRequest], limits: Limits | None = None
) -> list[Attempt]:
    """Attempts of any backend: a chat backend's own, else its records checked against `limits` (no prompt checks)."""
    if isinstance(backend, ChatBackend):
        return backend.attempt(requests)
    validator = TripletValidator(num_hard_negatives=0, limits=limits or Limits(), forbid_prompt_copies=False)
    attempts = []
    for request, record in zip(requests, backend.generate(requests)):
        if record is None:
            attempts.append(Attempt(request, None, "skipped", f"the {backend.name} backend wrote no triplet"))
            continue
        try:
            validator.check(record)
        except Rejected as rejected:
            attempts.append(Attempt(request, None, rejected.reason, rejected.detail))
            continue
        attempts.append(Attempt(request, record))
    return attempts


__all__ = ["NOT_SENT", "ChatBackend", "Completion", "attempt_triplets"]
