"""The interface of triplet writers: given captioned images, write (modification, modified caption, negatives)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .record import TripletRecord


@dataclass(frozen=True)
class CaptionRequest:
    """One image to write a triplet for.

    Attributes:
        source_id: identifies the image; copied to the record.
        image: the image (path, URL or PIL image); copied to the record.
        caption: the image's caption c.
        variant: which of several triplets for the same image this is; backends write different triplets
            for different variants and the same triplet for the same request.
    """

    source_id: str
    image: object
    caption: str
    variant: int = 0


class TripletBackend(ABC):
    """Writes one [`TripletRecord`] per request, or None where it cannot (the request is skipped)."""

    name: ClassVar[str]

    @abstractmethod
    def generate(self, requests: Sequence[CaptionRequest]) -> list[TripletRecord | None]:
        """One record (or None) per request, in order."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Provenance of the records: at least `backend`, `model`, `prompt_version`, `temperature` and `seed`."""
