"""Contrastive losses of SCOT as pure functions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _group_shift(weight: float, name: str) -> float:
    if weight < 0:
        raise ValueError(f"{name} must be >= 0, got {weight}")
    return math.log(weight) if weight > 0 else -math.inf


def scot_contrastive_loss(
    query_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    negative_embeds: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    caption_embeds: torch.Tensor | None = None,
    hard_negative_weight: float = 1.0,
    caption_negative_weight: float = 1.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""SCOT's InfoNCE loss of composed queries against modified-caption text embeddings.

    With s the logit scale (1 / temperature), q_i the composed query of example i, u_j the
    modified-caption embeddings (the positives of all queries in the batch), n_ik the hard-negative
    caption embeddings of example i, c_i its original caption embedding, and w_h, w_c the group
    weights, the loss is the mean over queries of

        -log  exp(s q_i.u_{y_i}) / ( sum_j exp(s q_i.u_j)
                                     + w_h sum_k exp(s q_i.n_ik)
                                     + w_c exp(s q_i.c_i) )

    i.e. a cross-entropy over logits [s q.u | s q.n + log w_h | s q.c + log w_c]. A weight of 0
    removes its group. All embeddings are expected L2-normalised.

    Args:
        query_embeds: (B, D) composed queries f(V, T_m).
        target_embeds: (N, D) modified-caption embeddings, N >= B (N > B when gathered across devices).
        logit_scale: s, a scalar tensor (learnable) or float.
        negative_embeds: (B, K, D) hard-negative caption embeddings of each query.
        negative_mask: (B, K) bool, False where a hard-negative slot is padding.
        caption_embeds: (B, D) original caption embeddings T_c.
        hard_negative_weight: w_h.
        caption_negative_weight: w_c.
        labels: (B,) index of each query's positive in `target_embeds` (default: 0..B-1).

    Returns:
        The scalar mean loss.
    """
    if query_embeds.ndim != 2 or target_embeds.ndim != 2:
        raise ValueError(
            f"query_embeds and target_embeds must be 2-D, got {tuple(query_embeds.shape)} and {tuple(target_embeds.shape)}"
        )
    batch_size = query_embeds.shape[0]
    if labels is None:
        if target_embeds.shape[0] < batch_size:
            raise ValueError(f"target_embeds has {target_embeds.shape[0]} rows for {batch_size} queries")
        labels = torch.arange(batch_size, device=query_embeds.device)
    logit_groups = [logit_scale * query_embeds @ target_embeds.T]
    if negative_embeds is not None and negative_embeds.shape[1] > 0:
        negative_logits = logit_scale * torch.einsum("bd,bkd->bk", query_embeds, negative_embeds)
        negative_logits = negative_logits + _group_shift(hard_negative_weight, "hard_negative_weight")
        if negative_mask is not None:
            negative_logits = negative_logits.masked_fill(~negative_mask.bool(), -math.inf)
        logit_groups.append(negative_logits)
    if caption_embeds is not None:
        caption_logits = logit_scale * (query_embeds * caption_embeds).sum(-1, keepdim=True)
        logit_groups.append(caption_logits + _group_shift(caption_negative_weight, "caption_negative_weight"))
    logits = torch.cat(logit_groups, dim=1).float()
    return F.cross_entropy(logits, labels)


__all__ = ["scot_contrastive_loss"]
