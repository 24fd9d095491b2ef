"""One composed query from a reference image and a modification text, with any method of the registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..encoding import encode_references, encode_texts
from ..methods import CIRMethod, ScotMethod, build_method
from ..modeling_scot import ScotModel
from ..processing_scot import ImageInput, load_image
from .index import GalleryIndex


@dataclass(frozen=True)
class ComposedQuery:
    """The query embedding (1, D), the reference image's embedding (1, D; None for a method with its own
    query-side image encoder) and, for scot, the Combiner's weight of the text (the image gets 1 - weight)."""

    query_embeds: torch.Tensor
    image_embeds: torch.Tensor | None
    modality_weight: float | None


@torch.inference_mode()
def compose_query(model: ScotModel, image: ImageInput, text: str, method: CIRMethod | str) -> ComposedQuery:
    """Embed `image` (a path or an image) and `text` and compose them with `method` (a registry name or method)."""
    method = build_method(method) if isinstance(method, str) else method
    if method.needs_images:  # its own query-side image encoder: the large image tower never runs
        reference = load_image(image, "reference image")
        return ComposedQuery(method.queries(model, None, None, [text], [reference]).float().cpu(), None, None)
    text_embeds = encode_texts(model, [text], progress=False)
    image_embeds = encode_references(model, [image], text_embeds)
    if not isinstance(method, ScotMethod):
        return ComposedQuery(method.queries(model, image_embeds, text_embeds, [text]).float().cpu(), image_embeds, None)
    output = model.eval().compose(image_embeds.to(model.device), text_embeds.to(model.device))
    return ComposedQuery(output.query_embeds.float().cpu(), image_embeds, float(output.modality_weight[0]))


def search_query(
    index: GalleryIndex, query: ComposedQuery, k: int, exclude: Sequence[str] = ()
) -> tuple[list[float], list[str]]:
    """The `k` best gallery ids for `query`, best first, with their scores, never one of `exclude`."""
    scores, ids = index.search(query.query_embeds, k, exclude=[list(exclude)])
    found = [(score, item) for score, item in zip(scores[0].tolist(), ids[0]) if item is not None]
    return [score for score, _ in found], [item for _, item in found]


__all__ = ["ComposedQuery", "compose_query", "search_query"]
