"""One composed query from a reference image and a modification text, with any method of the harness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..encoding import encode_images, encode_texts
from ..methods import compose_queries
from ..modeling_scot import ScotModel
from ..processing_scot import ImageInput
from ..regions import region_mask
from .index import GalleryIndex


@dataclass(frozen=True)
class ComposedQuery:
    """The query embedding (1, D), the reference image's embedding (1, D) and, for scot, the Combiner's
    weight of the text (the image gets 1 - weight). A SCOT model with grid regions also gives one query per
    occupied region of the reference (`hypothesis_embeds`, (K, D)), pooled with `region_temperature`."""

    query_embeds: torch.Tensor
    image_embeds: torch.Tensor
    modality_weight: float | None
    hypothesis_embeds: torch.Tensor | None = None
    region_temperature: float | None = None


@torch.inference_mode()
def compose_query(model: ScotModel, image: ImageInput, text: str, method: str) -> ComposedQuery:
    """Embed `image` (a path or an image) and `text` and compose them with `method` (see `METHODS`)."""
    image_embeds = encode_images(model, [image], progress=False)
    text_embeds = encode_texts(model, [text], progress=False)
    if method != "scot":
        return ComposedQuery(compose_queries(method, model, image_embeds, text_embeds), image_embeds, None)
    regions = encode_images(model, [image], progress=False, regions=True) if model.config.region_grid else None
    device = model.device
    output = model.compose(image_embeds.to(device), text_embeds.to(device), None if regions is None else regions.to(device))
    weight = float(output.modality_weight[0])
    if output.hypothesis_embeds is None:
        return ComposedQuery(output.query_embeds.float().cpu(), image_embeds, weight)
    occupied = region_mask(output.region_embeds)[0]
    hypotheses = output.hypothesis_embeds[0][occupied] if occupied.any() else output.hypothesis_embeds[0]
    return ComposedQuery(
        output.query_embeds.float().cpu(), image_embeds, weight, hypotheses.float().cpu(), model.config.region_temperature
    )


def search_query(
    index: GalleryIndex, query: ComposedQuery, k: int, exclude: Sequence[str] = ()
) -> tuple[list[float], list[str]]:
    """The `k` best gallery ids for `query`, best first, with their scores, never one of `exclude`.

    With referent hypotheses, each one searches the index and an image scores the soft maximum of its
    scores under the hypotheses that found it (as `ScotModel.score_gallery` does over a whole gallery).
    """
    if query.hypothesis_embeds is None:
        scores, ids = index.search(query.query_embeds, k, exclude=[list(exclude)])
        found = [(score, item) for score, item in zip(scores[0].tolist(), ids[0]) if item is not None]
    else:
        scores, ids = index.search(query.hypothesis_embeds, k, exclude=[list(exclude)] * len(query.hypothesis_embeds))
        per_item: dict[str, list[float]] = {}
        for row_scores, row_ids in zip(scores.tolist(), ids):
            for score, item in zip(row_scores, row_ids):
                if item is not None:
                    per_item.setdefault(item, []).append(score)
        temperature = query.region_temperature
        pooled = {
            item: temperature * torch.logsumexp(torch.tensor(values) / temperature, dim=0).item()
            for item, values in per_item.items()
        }
        found = sorted(((score, item) for item, score in pooled.items()), key=lambda pair: -pair[0])[:k]
    return [score for score, _ in found], [item for _, item in found]


__all__ = ["ComposedQuery", "compose_query", "search_query"]
