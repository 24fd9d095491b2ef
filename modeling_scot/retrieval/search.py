"""Exact inner-product top-k search with torch, in query chunks so that memory stays bounded."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..similarity import image_scores

MAX_SCORES_PER_CHUNK = 2**24
"""Score-matrix elements computed at once (64 MiB of float32): 16 queries at a time on a 1M gallery."""
MISSING = -1
"""Index of an empty result slot (fewer than k gallery items left after exclusion); its score is -inf."""


def _order_ties_by_index(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score (descending), equal scores by index (ascending)."""
    indices, by_index = indices.sort(dim=1)
    scores = scores.gather(1, by_index)
    scores, by_score = scores.sort(dim=1, descending=True, stable=True)
    return scores, indices.gather(1, by_score)


def _top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row; among equal scores the lower index wins, also at the k-th place."""
    values, indices = scores.topk(k, dim=1)
    kth = values[:, -1:]
    boundary_ties = ((scores == kth).sum(1) > (values == kth).sum(1)).nonzero().flatten()
    for row in boundary_ties.tolist():
        candidates = (scores[row] >= kth[row]).nonzero().flatten()
        order = scores[row, candidates].sort(descending=True, stable=True).indices[:k]
        indices[row] = candidates[order]
        values[row] = scores[row, indices[row]]
    return _order_ties_by_index(values, indices)


def exact_search(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    *,
    exclude: Sequence[Sequence[int]] | None = None,
    max_scores_per_chunk: int = MAX_SCORES_PER_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` gallery items with the highest [`image_scores`] with each query.

    Args:
        queries: (Q, D) query embeddings.
        gallery: (N, D) gallery embeddings, or (N, K, D) with K vectors per item.
        k: results per query, at most N.
        exclude: per query, gallery indices never returned (e.g. the reference image).
        max_scores_per_chunk: bounds the (queries x gallery vectors) score block computed at once.

    Returns (scores, indices), both (Q, k), best first; equal scores rank the lower index first. Slots
    left empty by exclusion have index -1 and score -inf.
    """
    if queries.ndim != 2 or gallery.ndim not in (2, 3) or queries.shape[1] != gallery.shape[-1]:
        raise ValueError(
            f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} must be (Q, D) and (N, D) or (N, K, D)"
        )
    if not 1 <= k <= gallery.shape[0]:
        raise ValueError(f"k must be between 1 and the gallery size {gallery.shape[0]}, got {k}")
    if exclude is not None and len(exclude) != queries.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} entries for {queries.shape[0]} queries")
    queries = queries.to(gallery.dtype)
    if queries.shape[0] == 0:
        return torch.empty(0, k, dtype=gallery.dtype), torch.empty(0, k, dtype=torch.long)
    step = max(1, max_scores_per_chunk // gallery[..., 0].numel())
    all_scores, all_indices = [], []
    for start in range(0, queries.shape[0], step):
        scores = image_scores(queries[start : start + step], gallery)
        if exclude is not None:
            for row, excluded in enumerate(exclude[start : start + step]):
                scores[row, list(excluded)] = -torch.inf
        values, indices = _top_k(scores, k)
        indices[values == -torch.inf] = MISSING
        all_scores.append(values)
        all_indices.append(indices)
    return torch.cat(all_scores), torch.cat(all_indices)


__all__ = ["MISSING", "exact_search"]
