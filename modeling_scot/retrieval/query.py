"""One composed query from a reference image and a modification text, with any method of the harness."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..encoding import encode_images, encode_texts
from ..methods import compose_queries
from ..modeling_scot import ScotModel
from ..processing_scot import ImageInput


@dataclass(frozen=True)
class ComposedQuery:
    """The query embedding (1, D), the reference image's embedding (1, D) and, for scot, the Combiner's
    weight of the text (the image gets 1 - weight)."""

    query_embeds: torch.Tensor
    image_embeds: torch.Tensor
    modality_weight: float | None


@torch.inference_mode()
def compose_query(model: ScotModel, image: ImageInput, text: str, method: str) -> ComposedQuery:
    """Embed `image` (a path or an image) and `text` and compose them with `method` (see `METHODS`)."""
    image_embeds = encode_images(model, [image], progress=False)
    text_embeds = encode_texts(model, [text], progress=False)
    if method != "scot":
        return ComposedQuery(compose_queries(method, model, image_embeds, text_embeds), image_embeds, None)
    output = model.compose(image_embeds.to(model.device), text_embeds.to(model.device))
    return ComposedQuery(output.query_embeds.float().cpu(), image_embeds, float(output.modality_weight[0]))


__all__ = ["ComposedQuery", "compose_query"]
