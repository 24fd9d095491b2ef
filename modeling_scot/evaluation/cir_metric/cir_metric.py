"""Recall@K for composed image retrieval as an `evaluate` metric.

Load it from this folder: `evaluate.load("<path to>/cir_metric")` (score matrix rows as predictions)
or `evaluate.load("<path to>/cir_metric", "rankings")` (ranked gallery indices as predictions).
"""

import datasets
import evaluate
import numpy as np
from modeling_scot.evaluation.metrics import ranking_recall_at_k
from modeling_scot.evaluation.metrics import recall_at_k
from modeling_scot.evaluation.metrics import recall_subset_at_k
from modeling_scot.evaluation.scoring import named

RANKINGS = "rankings"
SCORE_CONFIGS = ("default", "scores")

_DESCRIPTION = """
Recall@K (percent, rounded to 2 decimals) of composed image retrieval: the share of queries whose target gallery image ranks
within the top K. With `subset_ids`, Recall_subset@K ranks only each query's own subset (as CIRR).
Scores that tie with the target's count against it.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per query, either the scores of every gallery image (config "scores", the default)
        or gallery indices ranked best first (config "rankings").
    references: per query, the gallery index of its target.
    ks: cut-offs for recall@K, default (1, 5, 10, 50).
    exclude_ids: per query, gallery indices left out of its ranking (e.g. its reference image).
    subset_ids: per query, the gallery indices of its subset; adds recall_subset@K.
    subset_ks: cut-offs for recall_subset@K, default (1, 2, 3).
Returns:
    {"recall@K": float, ..., "recall_subset@K": float, ...}
Examples:
    >>> metric = evaluate.load("modeling_scot/evaluation/cir_metric")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.3]], references=[1, 1], ks=[1])
    {'recall@1': 50.0}
"""

_CITATION = """
@InProceedings{Liu_2021_ICCV,
    author    = {Liu, Zheyuan and Rodriguez-Opazo, Cristian and Teney, Damien and Gould, Stephen},
    title     = {Image Retrieval on Real-Life Images With Pre-Trained Vision-and-Language Models},
    booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
    year      = {2021},
    pages     = {2125-2134}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CIRMetric(evaluate.Metric):
    """Recall@K and Recall_subset@K from score matrices or rankings."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in (*SCORE_CONFIGS, RANKINGS):
            raise ValueError(f"config_name must be 'scores' or {RANKINGS!r}, got {self.config_name!r}")
        value = "int64" if self.config_name == RANKINGS else "float64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value(value)), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://github.com/Cuberick-Orion/CIRR"],
        )

    def _compute(
        self, predictions, references, ks=(1, 5, 10, 50), exclude_ids=None, subset_ids=None, subset_ks=(1, 2, 3)
    ):
        targets = [int(target) for target in references]
        ks, subset_ks = tuple(int(k) for k in ks), tuple(int(k) for k in subset_ks)
        if self.config_name == RANKINGS:
            result = named("recall", ranking_recall_at_k(predictions, targets, ks, exclude_ids))
            if subset_ids is not None:
                subset = ranking_recall_at_k(predictions, targets, subset_ks, exclude_ids, subset_ids)
                result |= named("recall_subset", subset)
            return result
        scores = np.asarray(predictions, dtype=np.float64)
        result = named("recall", recall_at_k(scores, targets, exclude_ids, ks))
        if subset_ids is not None:
            result |= named("recall_subset", recall_subset_at_k(scores, targets, subset_ids, exclude_ids, subset_ks))
        return result
