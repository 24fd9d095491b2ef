"""The demo's search: a reference image and a modification text, composed by one method, against a gallery index."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image

from ..methods import METHODS
from ..modeling_scot import ScotModel
from ..processing_scot import ImageInput
from ..retrieval.index import GalleryIndex
from ..retrieval.query import compose_query, search_query
from ..retrieval.sources import gallery_image

DUPLICATE_SCORE = 0.999
"""Gallery images at least this similar (cosine) to the reference image count as the reference itself."""
MAX_HIDDEN = 10
TEXT_FREE_METHODS = ("image",)


class DemoInputError(ValueError):
    """A query the demo cannot run; the message tells the user what to change."""


@dataclass(frozen=True)
class Hit:
    """One result: its rank (from 1), gallery id and score (cosine similarity with the query)."""

    rank: int
    id: str
    score: float


@dataclass(frozen=True)
class SearchResult:
    """The ranked gallery ids of a query, the reference's duplicates left out (`hidden`) and, for scot, the
    Combiner's weight of the text."""

    method: str
    hits: list[Hit]
    modality_weight: float | None
    hidden: list[str]

    def report(self) -> dict:
        """A JSON-ready summary, with the same keys as `scot search --json` where they overlap."""
        return {
            "method": self.method,
            "modality_weight": self.modality_weight,
            "hidden": self.hidden,
            "results": [asdict(hit) for hit in self.hits],
        }


class DemoSearch:
    """Searches `index` with queries composed by `model`, and shows the gallery images the index names."""

    def __init__(self, model: ScotModel, index: GalleryIndex):
        if index.source is None:
            raise ValueError(
                "the gallery index does not record where its images are: rebuild it with "
                "scot index (--images DIR or --world-seed N)"
            )
        self.model, self.index = model, index
        self.image(index.ids[0])  # fails here, not at the first search, when the images cannot be found

    def image(self, item: str) -> Image.Image:
        """The gallery image named `item`."""
        return gallery_image(self.index.source, item)

    def _duplicates(self, image_embeds: torch.Tensor) -> list[str]:
        if not self.index.normalized:
            return []
        scores, ids = self.index.search(image_embeds, MAX_HIDDEN)
        pairs = zip(ids[0], scores[0].tolist())
        return [item for item, score in pairs if item is not None and score >= DUPLICATE_SCORE]

    def search(
        self, image: ImageInput | None, text: str, k: int, method: str = "scot", hide_reference: bool = True
    ) -> SearchResult:
        """The `k` best gallery images for `image` modified by `text`; with `hide_reference`, gallery copies of
        the reference image are left out. Raises DemoInputError on a query that cannot run."""
        if image is None:
            raise DemoInputError("no reference image: upload one, or pick an example")
        if method not in METHODS:
            raise DemoInputError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
        if not text.strip() and method not in TEXT_FREE_METHODS:
            raise DemoInputError("no modification text: type what to change (only the 'image' method ignores it)")
        if k < 1:
            raise DemoInputError(f"the number of results must be at least 1, got {k}")
        query = compose_query(self.model, image, text.strip(), method)
        hidden = self._duplicates(query.image_embeds) if hide_reference else []
        scores, ids = search_query(self.index, query, k, hidden)
        hits = [Hit(rank, item, round(score, 6)) for rank, (item, score) in enumerate(zip(ids, scores), start=1)]
        return SearchResult(method, hits, query.modality_weight, hidden)


__all__ = ["DUPLICATE_SCORE", "DemoInputError", "DemoSearch", "Hit", "SearchResult"]
