"""Zero-shot evaluation on the built-in world's compositional CIR benchmark."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ..encoding import encode_images, encode_texts
from ..methods import METHODS, compose_queries, scot_gallery_scores, slerp
from ..world import WorldBenchmark, build_benchmark, caption, render_scene
from .metrics import recall_at_k, recall_subset_at_k

ORACLE = "oracle"
SLERP_ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 10))
VALIDATION_QUERIES = 300
RECALL_KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)


def _metrics(scores: torch.Tensor, benchmark: WorldBenchmark) -> dict[str, float]:
    exclude = [[reference] for reference in benchmark.reference_ids]
    recall = recall_at_k(scores, benchmark.target_ids, exclude, RECALL_KS)
    subset = recall_subset_at_k(scores, benchmark.target_ids, benchmark.subset_ids, exclude, SUBSET_KS)
    return {
        **{f"recall@{k}": round(value, 2) for k, value in recall.items()},
        **{f"recall_subset@{k}": round(value, 2) for k, value in subset.items()},
    }


def recall_at_1_by_edit_type(scores: torch.Tensor, benchmark: WorldBenchmark) -> dict[str, float]:
    """Recall@1 (percent) of the (queries, gallery) `scores` per edit type, each query's reference removed."""
    rows = defaultdict(list)
    for row, query in enumerate(benchmark.queries):
        rows[query.edit_type].append(row)
    result = {}
    for edit_type, indices in sorted(rows.items()):
        exclude = [[benchmark.reference_ids[i]] for i in indices]
        targets = [benchmark.target_ids[i] for i in indices]
        result[edit_type] = round(recall_at_k(scores[indices], targets, exclude, (1,))[1], 2)
    return result


@dataclass
class _Embedded:
    benchmark: WorldBenchmark
    gallery: torch.Tensor
    references: torch.Tensor
    modifications: torch.Tensor
    reference_regions: torch.Tensor | None


def _embed(model, benchmark: WorldBenchmark, batch_size: int, progress: bool, with_regions: bool = True) -> _Embedded:
    images = [render_scene(scene) for scene in benchmark.gallery]
    gallery = encode_images(model, images, batch_size=batch_size, progress=progress and "embedding gallery")
    texts = [query.modification for query in benchmark.queries]
    modifications = encode_texts(model, texts, batch_size=batch_size, progress=progress and "embedding queries")
    regions = None
    if with_regions and model.config.region_grid:
        references, query_reference = torch.tensor(benchmark.reference_ids).unique(return_inverse=True)
        desc = progress and "embedding reference regions"
        reference_images = [images[i] for i in references.tolist()]
        regions = encode_images(model, reference_images, batch_size=batch_size, progress=desc, regions=True)[query_reference]
    return _Embedded(benchmark, gallery, gallery[benchmark.reference_ids], modifications, regions)


def validation_seed(seed: int) -> int:
    """The seed of the validation benchmark of a test seed: another stream (test seeds are >= 0)."""
    return -1 - seed


def tune_slerp_alpha(model, seed: int, *, batch_size: int = 64, progress: bool = True) -> float:
    """The Slerp weight with the best Recall@1 on the validation benchmark of `seed` (never the test split)."""
    data = _embed(model, build_benchmark(validation_seed(seed), VALIDATION_QUERIES), batch_size, progress, False)
    exclude = [[reference] for reference in data.benchmark.reference_ids]

    def recall_at_1(alpha: float) -> float:
        scores = slerp(data.references, data.modifications, alpha) @ data.gallery.T
        return recall_at_k(scores, data.benchmark.target_ids, exclude, (1,))[1]

    return max(SLERP_ALPHAS, key=recall_at_1)


def evaluate_world(
    model,
    seed: int,
    methods: tuple[str, ...] = METHODS,
    *,
    num_queries: int = 1000,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Recall@K and Recall_subset@K (percent) of each method, plus the `oracle` (retrieval with the
    text embedding of the true modified caption), on the world benchmark of `seed`. Slerp's weight is
    tuned on the validation benchmark of `seed`.

    Returns `{"benchmark": "world", "split": "test", "seed", "test_queries", "gallery_size", "methods":
    {name: metrics}, "slerp_alpha", "recall@1_by_edit_type": {name: {edit type: Recall@1}}}`.
    """
    data = _embed(model, build_benchmark(seed, num_queries), batch_size, progress)
    benchmark = data.benchmark
    targets = [caption(query.target) for query in benchmark.queries]
    oracle = encode_texts(model, targets, batch_size=batch_size, progress=False)
    report: dict = {"benchmark": "world", "split": "test", "seed": seed}
    report |= {"test_queries": len(benchmark.queries), "gallery_size": len(benchmark.gallery)}
    results: dict[str, dict[str, float]] = {}
    by_edit_type: dict[str, dict[str, float]] = {}

    def score(name: str, queries: torch.Tensor | None, scores: torch.Tensor | None = None) -> None:
        scores = queries @ data.gallery.T if scores is None else scores
        results[name] = _metrics(scores, benchmark)
        by_edit_type[name] = recall_at_1_by_edit_type(scores, benchmark)

    for method in methods:
        if method == "slerp":
            report["slerp_alpha"] = tune_slerp_alpha(model, seed, batch_size=batch_size, progress=False)
            score(method, slerp(data.references, data.modifications, report["slerp_alpha"]))
        elif method == "scot":
            score(method, None, scot_gallery_scores(model, data.references, data.modifications, data.gallery, data.reference_regions))
        else:
            score(method, compose_queries(method, model, data.references, data.modifications))
    score(ORACLE, oracle)
    report["methods"] = results
    report["recall@1_by_edit_type"] = by_edit_type
    return report


__all__ = ["evaluate_world", "recall_at_1_by_edit_type", "tune_slerp_alpha", "validation_seed"]
