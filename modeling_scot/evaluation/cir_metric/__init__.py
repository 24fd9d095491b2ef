"""The `cir_metric` evaluate module (this folder) and a `Trainer(compute_metrics=...)` built on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

METRIC_PATH = Path(__file__).resolve().parent


def load_cir_metric(config_name: str = "scores") -> evaluate.EvaluationModule:
    """The metric loaded offline from its folder; "scores" or "rankings" predictions."""
    return evaluate.load(str(METRIC_PATH), config_name, keep_in_memory=True)


def build_compute_metrics(
    ks: Sequence[int] = (1, 5, 10, 50),
    exclude_ids: Sequence[Sequence[int]] | None = None,
    subset_ids: Sequence[Sequence[int]] | None = None,
    subset_ks: Sequence[int] = (1, 2, 3),
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: predictions are the (queries, gallery) scores (the first array
    when the model returns several) and label_ids each query's target gallery index."""
    metric = load_cir_metric()

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        scores = prediction.predictions
        if isinstance(scores, (tuple, list)):
            scores = scores[0]
        targets = np.asarray(prediction.label_ids).reshape(-1)
        return metric.compute(
            predictions=np.asarray(scores),
            references=targets,
            ks=list(ks),
            exclude_ids=exclude_ids,
            subset_ids=subset_ids,
            subset_ks=list(subset_ks),
        )

    return compute_metrics


__all__ = ["METRIC_PATH", "build_compute_metrics", "load_cir_metric"]
