"""Composed image retrieval metrics.

Recall@K over a gallery, over per-query subsets (CIRR's Recall_subset) and over per-query galleries
(GeneCIS), and CIRCO's mAP@K, from score matrices or from ranked id lists. Ties in a score matrix
always count against the relevant images.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

IdsPerQuery = Sequence[int | Sequence[int]]


def as_score_matrix(scores: object) -> np.ndarray:
    """A finite (queries, gallery) float matrix from a numpy array, torch tensor or nested lists.

    float32 stays float32 (a large gallery's scores are not copied); anything else becomes float64.
    """
    if hasattr(scores, "detach"):  # a torch tensor, possibly on an accelerator or in half precision
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (queries, gallery) matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores


def _per_query(ids: IdsPerQuery, num_queries: int, name: str) -> list[list[int]]:
    if len(ids) != num_queries:
        raise ValueError(f"{name} has {len(ids)} entries for {num_queries} queries")
    return [[int(value)] if np.ndim(value) == 0 else [int(v) for v in value] for value in ids]


def _candidates(
    shape: tuple[int, int], exclude_ids: IdsPerQuery | None, subset_ids: IdsPerQuery | None
) -> np.ndarray:
    """Boolean (queries, gallery) mask of the items each query ranks."""
    num_queries = shape[0]
    candidates = np.ones(shape, dtype=bool)
    if subset_ids is not None:
        candidates[:] = False
        for row, ids in enumerate(_per_query(subset_ids, num_queries, "subset_ids")):
            candidates[row, ids] = True
    if exclude_ids is not None:
        for row, ids in enumerate(_per_query(exclude_ids, num_queries, "exclude_ids")):
            candidates[row, ids] = False
    return candidates


def _ranks(
    scores: object, target_ids: Sequence[int], exclude_ids: IdsPerQuery | None, subset_ids: IdsPerQuery | None
) -> np.ndarray:
    """Rank of each target: 1 + the number of other candidates scoring at least as high (ties count against it)."""
    scores = as_score_matrix(scores)
    num_queries, gallery_size = scores.shape
    targets = np.asarray(target_ids, dtype=np.int64).reshape(-1)
    if targets.shape != (num_queries,) or ((targets < 0) | (targets >= gallery_size)).any():
        raise ValueError(f"target_ids must hold {num_queries} gallery indices in [0, {gallery_size})")
    rows = np.arange(num_queries)
    candidates = _candidates(scores.shape, None, subset_ids)
    if not candidates[rows, targets].all():
        raise ValueError("every query's subset must contain its target")
    excluded = ~_candidates(scores.shape, exclude_ids, None)
    bad = np.flatnonzero(excluded[rows, targets])
    if bad.size:
        raise ValueError(f"query {bad[0]} excludes its own target {targets[bad[0]]}")
    candidates &= ~excluded
    target_scores = scores[rows, targets]
    candidates[rows, targets] = False
    return 1 + ((scores >= target_scores[:, None]) & candidates).sum(axis=1)


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(type(k) is not int or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {ks}")


def _recall(ranks: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    _check_ks(ks)
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


def gallery_recall_at_k(
    scores: object, target_index: int | Sequence[int] = 0, ks: Sequence[int] = (1, 2, 3)
) -> dict[int, float]:
    """Recall@K when every query has its own gallery (GeneCIS).

    Args:
        scores: one row per query scoring that query's own gallery: a matrix, or rows of different lengths.
        target_index: the target's position in every row (GeneCIS: 0), or one position per query.
        ks: cut-offs.
    """
    if hasattr(scores, "detach") or isinstance(scores, np.ndarray):
        rows = list(as_score_matrix(scores))
    else:
        rows = [as_score_matrix([row])[0] for row in scores]
    if not rows:
        raise ValueError("scores hold no queries")
    matrix = np.zeros((len(rows), max(len(row) for row in rows)))
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    targets = np.broadcast_to(np.asarray(target_index, dtype=np.int64), (len(rows),))
    return _recall(_ranks(matrix, targets, None, [range(len(row)) for row in rows]), ks)


def ranking_recall_at_k(
    rankings: Sequence[Sequence[Hashable]],
    target_ids: Sequence[Hashable],
    ks: Sequence[int],
    exclude_ids: Sequence[Sequence[Hashable]] | None = None,
    subset_ids: Sequence[Sequence[Hashable]] | None = None,
) -> dict[int, float]:
    """Recall@K from ranked id lists: the target's 1-based position in its query's list (absent: a miss).

    `exclude_ids` drops ids from each list and `subset_ids` keeps only the query's subset, before ranking.
    """
    num_queries = len(rankings)
    if len(target_ids) != num_queries:
        raise ValueError(f"{num_queries} rankings for {len(target_ids)} targets")
    excluded = _id_sets(exclude_ids, num_queries, "exclude_ids")
    subsets = _id_sets(subset_ids, num_queries, "subset_ids")
    ranks = []
    for row, (ranking, target) in enumerate(zip(rankings, target_ids)):
        kept = [
            item
            for item in ranking
            if (excluded is None or item not in excluded[row]) and (subsets is None or item in subsets[row])
        ]
        hits = _hit_positions(kept, {target})
        ranks.append(hits[0] if hits.size else np.inf)
    return _recall(np.asarray(ranks, dtype=np.float64), ks)


def _id_sets(ids: Sequence[Sequence[Hashable]] | None, num_queries: int, name: str) -> list[set[Hashable]] | None:
    if ids is None:
        return None
    if len(ids) != num_queries:
        raise ValueError(f"{name} has {len(ids)} entries for {num_queries} queries")
    return [{group} if np.ndim(group) == 0 else set(group) for group in ids]


def _positive_ranks(row: np.ndarray, positives: Sequence[int]) -> np.ndarray:
    """1-based ranks of the positives in one score row, each placed after every item it ties with."""
    ordered = np.sort(row[np.asarray(positives, dtype=np.int64)])[::-1]
    at_least = (row[None, :] >= ordered[:, None]).sum(axis=1)
    tied = (ordered[None, :] == ordered[:, None]).sum(axis=1)
    first_of_tie = np.searchsorted(-ordered, -ordered, side="left")
    return at_least - tied + (np.arange(len(ordered)) - first_of_tie) + 1


def _mean_average_precision(
    hit_ranks: Sequence[np.ndarray], num_positives: Sequence[int], ks: Sequence[int]
) -> dict[int, float]:
    """mAP@K (percent): AP@K = sum of precision at each hit rank <= K, over min(K, number of positives)."""
    _check_ks(ks)
    result = {}
    for k in ks:
        aps = []
        for ranks, total in zip(hit_ranks, num_positives):
            ranks = np.sort(np.asarray(ranks, dtype=np.float64))
            precisions = np.arange(1, len(ranks) + 1) / ranks
            aps.append(float(precisions[ranks <= k].sum()) / min(k, total))
        result[k] = 100.0 * float(np.mean(aps))
    return result


def _positive_sets(positive_ids: Sequence[Sequence[Hashable]], num_queries: int) -> list[list[Hashable]]:
    if len(positive_ids) != num_queries:
        raise ValueError(f"positive_ids has {len(positive_ids)} entries for {num_queries} queries")
    sets = [list(dict.fromkeys(ids)) for ids in positive_ids]
    if any(not ids for ids in sets):
        raise ValueError("every query needs at least one positive")
    return sets


def map_at_k(
    scores: object, positive_ids: Sequence[Sequence[int]], ks: Sequence[int] = (5, 10, 25, 50)
) -> dict[int, float]:
    """CIRCO's mAP@K (percent) over the whole gallery; a positive tied with other items ranks after them.

    Args:
        scores: (queries, gallery) similarity matrix.
        positive_ids: per query, the gallery indices of all its ground truths.
        ks: cut-offs.
    """
    scores = as_score_matrix(scores)
    positives = _positive_sets(positive_ids, scores.shape[0])
    hit_ranks = [_positive_ranks(row, ids) for row, ids in zip(scores, positives)]
    return _mean_average_precision(hit_ranks, [len(ids) for ids in positives], ks)


def _hit_positions(ranking: Sequence[Hashable], positives: set[Hashable]) -> np.ndarray:
    return np.asarray([rank for rank, item in enumerate(ranking, start=1) if item in positives], dtype=np.float64)


def ranking_map_at_k(
    rankings: Sequence[Sequence[Hashable]],
    positive_ids: Sequence[Sequence[Hashable]],
    ks: Sequence[int] = (5, 10, 25, 50),
) -> dict[int, float]:
    """mAP@K (percent) from ranked id lists, as CIRCO's evaluation server computes it."""
    positives = _positive_sets(positive_ids, len(rankings))
    hit_ranks = [_hit_positions(ranking, set(ids)) for ranking, ids in zip(rankings, positives)]
    return _mean_average_precision(hit_ranks, [len(ids) for ids in positives], ks)


def top_k_indices(
    scores: object, k: int, exclude_ids: IdsPerQuery | None = None, subset_ids: IdsPerQuery | None = None
) -> list[list[int]]:
    """Each query's k best gallery indices, best first; equal scores keep gallery order.

    Args:
        scores: (queries, gallery) similarity matrix.
        k: how many to keep; every query must have at least k candidates.
        exclude_ids: per query, gallery indices never returned (its reference image, as in CIRR).
        subset_ids: per query, the only gallery indices it may return (CIRR's img_set, GeneCIS's gallery).
    """
    scores = as_score_matrix(scores)
    if type(k) is not int or k < 1:
        raise ValueError(f"k must be a positive int, got {k}")
    candidates = _candidates(scores.shape, exclude_ids, subset_ids)
    result = []
    for row, (values, allowed) in enumerate(zip(scores, candidates)):
        ids = np.flatnonzero(allowed)
        if len(ids) < k:
            raise ValueError(f"query {row} has {len(ids)} candidates, fewer than k={k}")
        kth = np.partition(values[ids], len(ids) - k)[len(ids) - k]
        best = ids[values[ids] >= kth]
        result.append(best[np.argsort(-values[best], kind="stable")][:k].tolist())
    return result


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
