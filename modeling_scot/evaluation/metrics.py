"""Composed image retrieval metrics: Recall@K over a gallery and over per-query subsets (as in CIRR)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IdsPerQuery = Sequence[int | Sequence[int]]


def _per_query(ids: IdsPerQuery, num_queries: int, name: str) -> list[list[int]]:
    if len(ids) != num_queries:
        raise ValueError(f"{name} has {len(ids)} entries for {num_queries} queries")
    return [[int(value)] if np.ndim(value) == 0 else [int(v) for v in value] for value in ids]


def _ranks(
    scores: object, target_ids: Sequence[int], exclude_ids: IdsPerQuery | None, subset_ids: IdsPerQuery | None
) -> np.ndarray:
    """Rank of each target: 1 + the number of other candidates scoring at least as high (ties count against it)."""
    if hasattr(scores, "detach"):  # a torch tensor, possibly on an accelerator or in half precision
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (queries, gallery) matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    num_queries, gallery_size = scores.shape
    targets = np.asarray(target_ids, dtype=np.int64).reshape(-1)
    if targets.shape != (num_queries,) or ((targets < 0) | (targets >= gallery_size)).any():
        raise ValueError(f"target_ids must hold {num_queries} gallery indices in [0, {gallery_size})")
    rows = np.arange(num_queries)
    candidates = np.ones_like(scores, dtype=bool)
    if subset_ids is not None:
        candidates[:] = False
        for row, ids in enumerate(_per_query(subset_ids, num_queries, "subset_ids")):
            candidates[row, ids] = True
        if not candidates[rows, targets].all():
            raise ValueError("every query's subset must contain its target")
    if exclude_ids is not None:
        for row, ids in enumerate(_per_query(exclude_ids, num_queries, "exclude_ids")):
            if targets[row] in ids:
                raise ValueError(f"query {row} excludes its own target {targets[row]}")
            candidates[row, ids] = False
    target_scores = scores[rows, targets]
    candidates[rows, targets] = False
    return 1 + ((scores >= target_scores[:, None]) & candidates).sum(axis=1)


def _recall(ranks: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    if not ks or any(type(k) is not int or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {ks}")
    return {k: 100.0 * float(np.mean(ranks <= k)) for k in ks}


def recall_at_k(
    scores: object,
    target_ids: Sequence[int],
    exclude_ids: IdsPerQuery | None,
    ks: Sequence[int] = (1, 5, 10, 50),
) -> dict[int, float]:
    """Percent of queries whose target ranks within the top k, for each k.

    Args:
        scores: (queries, gallery) similarity matrix (numpy array, torch tensor or nested lists).
        target_ids: gallery index of each query's target.
        exclude_ids: per query, gallery indices removed from its ranking (its reference image, as in CIRR).
        ks: cut-offs.
    """
    return _recall(_ranks(scores, target_ids, exclude_ids, None), ks)


def recall_subset_at_k(
    scores: object,
    target_ids: Sequence[int],
    subset_ids: IdsPerQuery,
    exclude_ids: IdsPerQuery | None,
    ks: Sequence[int] = (1, 2, 3),
) -> dict[int, float]:
    """Recall@K when each query ranks only its own subset of the gallery (CIRR's Recall_subset)."""
    return _recall(_ranks(scores, target_ids, exclude_ids, subset_ids), ks)


def text_target_recall(query_embeds: object, target_embeds: object, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (percent) of composed queries against the distinct target-caption embeddings of a set.

    Row i of `target_embeds` is query i's target; identical target rows (the same caption) are one
    candidate, so duplicates neither help nor hurt. This is SCOT's validation metric: it needs no
    target images.
    """
    queries = np.asarray(query_embeds, dtype=np.float64)
    targets = np.asarray(target_embeds, dtype=np.float64)
    if queries.ndim != 2 or queries.shape != targets.shape:
        raise ValueError(f"query_embeds {queries.shape} and target_embeds {targets.shape} must be equal (N, D) matrices")
    candidates, target_ids = np.unique(targets, axis=0, return_inverse=True)
    ranks = _ranks(queries @ candidates.T, target_ids.reshape(-1), None, None)
    return {f"recall@{k}": value for k, value in _recall(ranks, ks).items()}


def compute_text_retrieval_metrics(prediction) -> dict[str, float]:
    """`Trainer(compute_metrics=...)` for a [`ScotModel`]: predictions are (query_embeds, target_embeds)."""
    query_embeds, target_embeds = prediction.predictions[:2]
    return text_target_recall(query_embeds, target_embeds)
