"""Composed-query methods run side by side on one harness: SCOT and training-free baselines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .baselines import embedding_sum, image_only, slerp, text_only

QueryFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TRAINING_FREE: dict[str, QueryFunction] = {"image": image_only, "text": text_only, "sum": embedding_sum, "slerp": slerp}
METHODS: tuple[str, ...] = ("scot", *TRAINING_FREE)


@torch.no_grad()
def compose_queries(
    method: str, model, image_embeds: torch.Tensor, text_embeds: torch.Tensor, batch_size: int = 4096
) -> torch.Tensor:
    """Query embeddings (N, D) of `method` from reference image and modification text embeddings."""
    if method in TRAINING_FREE:
        return TRAINING_FREE[method](image_embeds, text_embeds)
    if method != "scot":
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    model.eval()
    device = model.device
    parts = [
        model.compose(image_embeds[i : i + batch_size].to(device), text_embeds[i : i + batch_size].to(device))
        .query_embeds.float()
        .cpu()
        for i in range(0, len(image_embeds), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def scot_gallery_scores(
    model,
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    gallery_embeds: torch.Tensor,
    region_embeds: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """(N, G) SCOT scores of N queries against G gallery embeddings, by `model.score_gallery` (which pools
    the referent hypotheses of a model with grid regions, given their `region_embeds` (N, K, D))."""
    model.eval()
    device = model.device
    parts = []
    for i in range(0, len(image_embeds), batch_size):
        regions = None if region_embeds is None else region_embeds[i : i + batch_size].to(device)
        output = model.compose(image_embeds[i : i + batch_size].to(device), text_embeds[i : i + batch_size].to(device), regions)
        parts.append(model.score_gallery(output, gallery_embeds).float().cpu())
    return torch.cat(parts)


__all__ = ["METHODS", "TRAINING_FREE", "compose_queries", "scot_gallery_scores", "embedding_sum", "image_only", "slerp", "text_only"]
