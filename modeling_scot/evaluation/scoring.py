"""Benchmark metrics and ranked lists from a (queries, gallery) score matrix over a [`CIRSplit`].

Columns of the score matrix follow `split.gallery`. For GeneCIS every query is scored on that union
gallery too and only its own gallery's columns are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cir_data import CIRQuery, CIRSplit
from .metrics import (
    as_score_matrix,
    gallery_recall_at_k,
    map_at_k,
    recall_at_k,
    recall_subset_at_k,
    top_k_indices,
)


@dataclass(frozen=True)
class Protocol:
    """The cut-offs a benchmark reports for each metric family (empty: not reported)."""

    recall_ks: tuple[int, ...] = ()
    subset_ks: tuple[int, ...] = ()
    map_ks: tuple[int, ...] = ()


PROTOCOLS = {
    "cirr": Protocol(recall_ks=(1, 5, 10, 50), subset_ks=(1, 2, 3)),
    "fashioniq": Protocol(recall_ks=(10, 50)),
    "circo": Protocol(recall_ks=(5, 10, 25, 50), map_ks=(5, 10, 25, 50)),
    "genecis": Protocol(recall_ks=(1, 2, 3)),
    "world": Protocol(recall_ks=(1, 5, 10, 50), subset_ks=(1, 2, 3)),
}


def named(family: str, values: dict[int, float]) -> dict[str, float]:
    """`{"<family>@<k>": value}`, values rounded to 2 decimals."""
    return {f"{family}@{k}": round(value, 2) for k, value in values.items()}


def with_cirr_average(metrics: dict[str, float]) -> dict[str, float]:
    """CIRR's headline "Avg" as papers report it, the mean of Recall@5 and Recall_subset@1, added as `avg`
    when both are present."""
    if "recall@5" in metrics and "recall_subset@1" in metrics:
        return metrics | {"avg": round((metrics["recall@5"] + metrics["recall_subset@1"]) / 2, 2)}
    return metrics


def _score_matrix(split: CIRSplit, scores: object) -> np.ndarray:
    scores = as_score_matrix(scores)
    expected = (len(split.queries), len(split.gallery))
    if scores.shape != expected:
        raise ValueError(
            f"{split.name}: scores have shape {scores.shape}, expected (queries, gallery) = {expected}"
        )
    return scores


def _columns(split: CIRSplit, query: CIRQuery, image_ids: Sequence[str], what: str) -> list[int]:
    missing = [image_id for image_id in image_ids if image_id not in split.gallery_index]
    if missing:
        raise ValueError(f"{split.benchmark} query {query.query_id}: {what} {missing[0]!r} is not in the gallery")
    return [split.gallery_index[image_id] for image_id in image_ids]


def _exclusions(split: CIRSplit) -> list[list[int]] | None:
    if not split.remove_reference:
        return None
    return [[split.gallery_index[q.reference]] if q.reference in split.gallery_index else [] for q in split.queries]


def _subsets(split: CIRSplit) -> list[list[int]]:
    result = []
    for query in split.queries:
        if query.subset is None:
            raise ValueError(f"{split.benchmark} query {query.query_id} has no subset")
        if query.target is not None and query.target not in query.subset:
            raise ValueError(f"{split.benchmark} query {query.query_id}: target {query.target!r} is not in its subset")
        result.append(_columns(split, query, query.subset, "subset image"))
    return result


def _query_gallery_scores(split: CIRSplit, scores: np.ndarray) -> list[np.ndarray]:
    """Each query's scores over its own gallery, entry j scoring `query.gallery[j]`."""
    return [
        scores[row, _columns(split, query, query.gallery, "gallery image")] for row, query in enumerate(split.queries)
    ]


def compute_metrics(split: CIRSplit, scores: object) -> dict[str, float]:
    """The benchmark's metrics in percent, rounded to 2 decimals; empty for a split without targets.

    CIRR: recall@1/5/10/50 without the reference, recall_subset@1/2/3 in img_set minus the reference,
    and avg (the mean of recall@5 and recall_subset@1).
    FashionIQ: recall@10/50. CIRCO: map@5/10/25/50 and recall@5/10/25/50 on target_img_id.
    GeneCIS: recall@1/2/3 within each query's own gallery. Ties always count against the target.
    """
    scores = _score_matrix(split, scores)
    if not split.has_targets:
        return {}
    protocol = PROTOCOLS[split.benchmark]
    if split.has_query_galleries:  # the target is each query's gallery[0]
        return named("recall", gallery_recall_at_k(_query_gallery_scores(split, scores), 0, protocol.recall_ks))
    targets = [_columns(split, query, [query.target], "target")[0] for query in split.queries]
    exclude = _exclusions(split)
    metrics = {}
    if protocol.map_ks:
        positives = [_columns(split, query, query.positives, "positive") for query in split.queries]
        metrics |= named("map", map_at_k(scores, positives, protocol.map_ks))
    metrics |= named("recall", recall_at_k(scores, targets, exclude, protocol.recall_ks))
    if protocol.subset_ks:
        subsets = _subsets(split)
        metrics |= named("recall_subset", recall_subset_at_k(scores, targets, subsets, exclude, protocol.subset_ks))
    if split.benchmark == "cirr":
        metrics = with_cirr_average(metrics)
    return metrics


def top_k_ids(split: CIRSplit, scores: object, k: int, within_subset: bool = False) -> list[list[str]]:
    """Each query's k best image ids, best first, as the protocol ranks them.

    The reference is left out where the protocol removes it (CIRR); GeneCIS queries rank only their own
    gallery; `within_subset` ranks only each query's subset (CIRR's img_set). Equal scores keep gallery order.
    """
    scores = _score_matrix(split, scores)
    if split.has_query_galleries:
        allowed = [_columns(split, query, query.gallery, "gallery image") for query in split.queries]
    else:
        allowed = _subsets(split) if within_subset else None
    indices = top_k_indices(scores, k, _exclusions(split), allowed)
    return [[split.gallery[column] for column in row] for row in indices]
