"""The demo's search: a reference image and a modification text, composed by one method, against a gallery index.

Searches from many threads at once are run in batches (one encoder pass for all their images, one for all
their texts), one batch at a time: the model and its tokenizer are only ever used by one thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from PIL import Image

from ..encoding import encode_references, encode_texts
from ..methods import METHODS, ScotMethod, build_method
from ..modeling_scot import ScotModel
from ..processing_scot import ImageInput, load_image
from ..retrieval.index import GalleryIndex
from ..retrieval.query import ComposedQuery, search_query
from ..retrieval.sources import gallery_image
from .batching import Batcher

DUPLICATE_SCORE = 0.999
"""Gallery images at least this similar (cosine) to the reference image count as the reference itself."""
MAX_HIDDEN = 10
MAX_BATCH_SIZE = 64
REFERENCE_NAME = "reference image"


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
    """The ranked gallery ids of a query, the reference's duplicates left out (`hidden`), the settings the method
    ran with and, for scot, the Combiner's weight of the text."""

    method: str
    hits: list[Hit]
    modality_weight: float | None
    hidden: list[str]
    settings: dict

    def report(self) -> dict:
        """A JSON-ready summary, with the same keys as `scot search --json` where they overlap."""
        return {
            "method": self.method,
            "settings": self.settings,
            "modality_weight": self.modality_weight,
            "hidden": self.hidden,
            "results": [asdict(hit) for hit in self.hits],
        }


@dataclass(frozen=True)
class _Query:
    """One checked search waiting for its batch: the decoded reference image and the rest of the query."""

    reference: Image.Image
    text: str
    k: int
    method: str
    hide_reference: bool


@torch.inference_mode()
def compose_queries(
    model: ScotModel,
    images: list[Image.Image],
    texts: list[str],
    methods: list[str],
    method_settings: Mapping[str, Mapping] | None = None,
) -> list[ComposedQuery]:
    """The query of each (image, text, method name), like `compose_query`, with all the images embedded in one
    batch and all the texts in another; `method_settings` by method name (LinCIR's `model_path`)."""
    text_embeds = encode_texts(model, texts, progress=False)
    image_embeds = encode_references(model, images, text_embeds)
    query_embeds, weights = torch.empty_like(image_embeds), [None] * len(methods)
    for name in dict.fromkeys(methods):
        rows = [row for row, method in enumerate(methods) if method == name]
        method = build_method(name, **(method_settings or {}).get(name, {}))
        if isinstance(method, ScotMethod):
            output = model.compose(image_embeds[rows].to(model.device), text_embeds[rows].to(model.device))
            query_embeds[rows] = output.query_embeds.float().cpu()
            for row, weight in zip(rows, output.modality_weight.reshape(-1).tolist()):
                weights[row] = weight
        else:
            row_texts, row_images = [texts[row] for row in rows], [images[row] for row in rows]
            queries = method.queries(model, image_embeds[rows], text_embeds[rows], row_texts, row_images)
            query_embeds[rows] = queries.float().cpu()
    return [
        ComposedQuery(query_embeds[row : row + 1], image_embeds[row : row + 1], weights[row])
        for row in range(len(methods))
    ]


class DemoSearch:
    """Searches `index` with queries composed by `model`, and shows the gallery images the index names.
    Safe to call from many threads: concurrent searches share batches of up to `max_batch_size`."""

    def __init__(
        self,
        model: ScotModel,
        index: GalleryIndex,
        max_batch_size: int = MAX_BATCH_SIZE,
        method_settings: Mapping[str, Mapping] | None = None,
    ):
        if index.source is None:
            raise ValueError(
                "the gallery index does not record where its images are: rebuild it with "
                "scot index (--images DIR or --world-seed N)"
            )
        self.model, self.index = model.eval(), index
        self.method_settings = dict(method_settings or {})
        self.methods = [
            name for name, method in METHODS.items() if method.artefact is None or name in self.method_settings
        ]
        """The methods this search runs: those needing a trained folder only when `method_settings` names it."""
        self.settings_by_method = {name: self._public_settings(name) for name in self.methods}
        """What each method runs with, as reports show it (settings and trained folders checked here, before the
        first search)."""
        self._batcher = Batcher(self._run_batch, max_batch_size, name="scot-demo-search")
        self.image(index.ids[0])  # fails here, not at the first search, when the images cannot be found

    def _public_settings(self, name: str) -> dict:
        method = build_method(name, **self.method_settings.get(name, {}))
        method.load(self.model)
        return {key: value for key, value in method.settings().items() if key != method.artefact}

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
        the reference image are left out. `image` (a file path or an image) is read by `load_image` in the
        calling thread, its pixel limit included; the model work waits for a batch. Raises DemoInputError on a
        query that cannot run."""
        if image is None:
            raise DemoInputError("no reference image: upload one, or pick an example")
        if method not in self.methods:
            raise DemoInputError(f"unknown method {method!r}: choose from {', '.join(self.methods)}")
        if not text.strip() and METHODS[method].uses_text:
            raise DemoInputError("no modification text: type what to change (only the 'image' method ignores it)")
        if k < 1:
            raise DemoInputError(f"the number of results must be at least 1, got {k}")
        try:
            reference = load_image(image, REFERENCE_NAME)
        except (ValueError, OSError) as err:
            raise DemoInputError(str(err)) from err
        return self._batcher(_Query(reference, text.strip(), k, method, hide_reference))

    @torch.inference_mode()
    def _run_batch(self, queries: list[_Query]) -> list[SearchResult]:
        results = []
        images, texts = [query.reference for query in queries], [query.text for query in queries]
        methods = [query.method for query in queries]
        composed_queries = compose_queries(self.model, images, texts, methods, self.method_settings)
        for query, composed in zip(queries, composed_queries):
            hidden = self._duplicates(composed.image_embeds) if query.hide_reference else []
            scores, ids = search_query(self.index, composed, query.k, hidden)
            ranked = enumerate(zip(ids, scores), start=1)
            hits = [Hit(rank, item, round(score, 6)) for rank, (item, score) in ranked]
            settings = self.settings_by_method[query.method]
            results.append(SearchResult(query.method, hits, composed.modality_weight, hidden, settings))
        return results


__all__ = ["DUPLICATE_SCORE", "DemoInputError", "DemoSearch", "Hit", "SearchResult", "compose_queries"]
