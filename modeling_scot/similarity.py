"""How a query embedding scores a gallery image: one similarity rule for search, evaluation and every method."""

from __future__ import annotations

import torch


def image_scores(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, N) scores of (Q, D) queries against a gallery of (N, D) embeddings (inner product), or of (N, K, D)
    multi-vector embeddings (BLIP-2's query tokens): an image scores as its best vector, as BLIP-2 scores text."""
    if gallery.ndim == 2:
        return queries @ gallery.T
    count, vectors, dim = gallery.shape
    return (queries @ gallery.reshape(count * vectors, dim).T).reshape(len(queries), count, vectors).amax(dim=-1)


__all__ = ["image_scores"]
