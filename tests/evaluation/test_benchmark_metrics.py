"""mAP@K, per-query-gallery and ranking recalls, benchmark scoring and the `evaluate` metric, on hand-computed cases."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
import torch
from tests.evaluation.benchmark_fixtures import make_circo, make_cirr, make_fashioniq, make_genecis
from transformers import EvalPrediction

from modeling_scot.evaluation.cir_metric import METRIC_PATH, build_compute_metrics, load_cir_metric
from modeling_scot.evaluation.circo import load_circo
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.fashioniq import load_fashioniq
from modeling_scot.evaluation.genecis import load_genecis
from modeling_scot.evaluation.metrics import (
    gallery_recall_at_k,
    map_at_k,
    ranking_map_at_k,
    ranking_recall_at_k,
    recall_at_k,
    recall_subset_at_k,
    top_k_indices,
)
from modeling_scot.evaluation.scoring import compute_metrics, top_k_ids

# ------------------------------------------------------------------------------------------------ mAP@K

MAP_SCORES = [
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # positives 0, 2, 5 -> hit ranks 1, 3, 6
    [0.1, 0.2, 0.3, 0.4, 0.9, 0.0],  # positive 4 -> hit rank 1
]
MAP_POSITIVES = [[0, 2, 5], [4]]


def test_map_at_k_matches_the_circo_formula_by_hand():
    # q0: AP@2 = (1/1) / min(2, 3) = 0.5;  AP@5 = (1/1 + 2/3) / 3 = 5/9;  AP@10 = (1 + 2/3 + 3/6) / 3 = 13/18
    # q1: AP@K = (1/1) / min(K, 1) = 1
    expected = {2: 100 * (0.5 + 1) / 2, 5: 100 * (5 / 9 + 1) / 2, 10: 100 * (13 / 18 + 1) / 2}
    assert map_at_k(MAP_SCORES, MAP_POSITIVES, ks=(2, 5, 10)) == pytest.approx(expected)
    assert map_at_k(torch.tensor(MAP_SCORES), MAP_POSITIVES, ks=(5,))[5] == pytest.approx(100 * 7 / 9)
    rankings = [np.argsort(-np.asarray(row)).tolist() for row in MAP_SCORES]
    assert ranking_map_at_k(rankings, MAP_POSITIVES, ks=(2, 5, 10)) == pytest.approx(expected)


def test_map_at_k_divides_by_k_when_there_are_more_positives_than_k():
    # 6 positives at ranks 1, 2, 4, 5, 6, 7 of 7: AP@3 = (1/1 + 2/2) / min(3, 6) = 2/3
    scores = [[7, 6, 5, 4, 3, 2, 1]]
    assert map_at_k(scores, [[0, 1, 3, 4, 5, 6]], ks=(3,)) == pytest.approx({3: 200 / 3})


def test_map_at_k_ranks_positives_after_the_items_they_tie_with():
    # one positive tied with two negatives: rank 3 -> AP@5 = (1/3) / 1
    assert map_at_k([[0.5, 0.5, 0.5, 0.1]], [[0]], ks=(5,)) == pytest.approx({5: 100 / 3})
    # two positives tied with a negative: ranks 2 and 3 -> AP@3 = (1/2 + 2/3) / 2 = 7/12
    assert map_at_k([[0.5, 0.5, 0.5]], [[0, 2]], ks=(3,)) == pytest.approx({3: 100 * 7 / 12})
    # positives 0 and 1 tie with each other only, above a negative tied with positive 3:
    # ranks 1, 2 and 4 -> AP@4 = (1/1 + 2/2 + 3/4) / 3 = 11/12
    assert map_at_k([[0.9, 0.9, 0.2, 0.2]], [[0, 1, 3]], ks=(4,)) == pytest.approx({4: 100 * 11 / 12})


def test_map_at_k_counts_repeated_positives_once_and_rejects_bad_inputs():
    assert map_at_k(MAP_SCORES, [[0, 2, 5, 2], [4, 4]], ks=(5,)) == map_at_k(MAP_SCORES, MAP_POSITIVES, ks=(5,))
    with pytest.raises(ValueError, match="at least one positive"):
        map_at_k(MAP_SCORES, [[0], []])
    with pytest.raises(ValueError, match="positive_ids has 1 entries for 2 queries"):
        map_at_k(MAP_SCORES, [[0]])
    with pytest.raises(ValueError, match="ks"):
        map_at_k(MAP_SCORES, MAP_POSITIVES, ks=(0,))


# ----------------------------------------------------------------------------------------------- recall


def test_gallery_recall_counts_ties_against_the_target():
    # target in column 0: q0 ties with one item -> rank 2; q1 -> rank 1; q2 -> rank 3
    scores = [[0.5, 0.5, 0.1], [0.9, 0.2, 0.3], [0.1, 0.3, 0.2]]
    assert gallery_recall_at_k(scores) == pytest.approx({1: 100 / 3, 2: 200 / 3, 3: 100.0})
    assert gallery_recall_at_k(torch.tensor(scores), ks=(1,)) == pytest.approx({1: 100 / 3})
    # galleries of different sizes: q0 (2 items) rank 1, q1 (4 items, target column 2) rank 4
    ragged = [[0.7, 0.1], [0.9, 0.8, 0.1, 0.5]]
    assert gallery_recall_at_k(ragged, [0, 2], ks=(1, 3, 4)) == {1: 50.0, 3: 50.0, 4: 100.0}


def test_ranking_recall_filters_exclusions_and_subsets():
    rankings = [["a", "r", "t", "x"], ["t", "b"], ["x", "y"]]
    # q0 without its reference "r": "t" at 2; q1: "t" at 1; q2: target absent -> a miss
    assert ranking_recall_at_k(rankings, ["t", "t", "t"], ks=(1, 2), exclude_ids=["r", [], []]) == pytest.approx(
        {1: 100 / 3, 2: 200 / 3}
    )
    # only subset members count: q0 keeps ["t", "x"] -> 1
    assert ranking_recall_at_k([["a", "t", "x"]], ["t"], ks=(1,), subset_ids=[["t", "x"]]) == {1: 100.0}
    with pytest.raises(ValueError, match="2 rankings for 1 targets"):
        ranking_recall_at_k(rankings[:2], ["t"], ks=(1,))


def test_top_k_indices_keeps_gallery_order_among_ties():
    scores = [[0.1, 0.5, 0.5, 0.9, 0.5], [1.0, 0.0, 0.0, 0.0, 0.0]]
    assert top_k_indices(scores, 3) == [[3, 1, 2], [0, 1, 2]]
    assert top_k_indices(scores, 2, exclude_ids=[3, [0, 1]]) == [[1, 2], [2, 3]]
    assert top_k_indices(scores, 2, subset_ids=[[0, 4], [2, 3, 4]]) == [[4, 0], [2, 3]]
    with pytest.raises(ValueError, match="query 0 has 2 candidates, fewer than k=3"):
        top_k_indices(scores, 3, subset_ids=[[0, 4], [2, 3, 4]])


# ------------------------------------------------------------------------------------- benchmark scoring


def _gallery_order(split) -> np.ndarray:
    """Scores that rank every query's gallery in column order."""
    return -np.tile(np.arange(len(split.gallery), dtype=np.float64), (len(split.queries), 1))


def test_cirr_metrics_by_hand(tmp_path):
    split = load_cirr(make_cirr(tmp_path), "val")
    # gallery order, reference removed: q101 target col 1 (ref 0) -> 1; q102 target 3 -> 4;
    # q103 target 30 (ref 2 above it) -> 30; q104 target 55 (ref 0) -> 55
    # subsets minus reference: q101 -> 1; q102 {3, 1, 2, 50, 51} -> 3; q103 {30, 10, 11, 12, 40} -> 4; q104 -> 1
    assert compute_metrics(split, _gallery_order(split)) == {
        "recall@1": 25.0,
        "recall@5": 50.0,
        "recall@10": 50.0,
        "recall@50": 75.0,
        "recall_subset@1": 50.0,
        "recall_subset@2": 50.0,
        "recall_subset@3": 75.0,
        "avg": 50.0,  # (recall@5 + recall_subset@1) / 2
    }
    assert compute_metrics(load_cirr(tmp_path, "test1"), np.zeros((2, 60))) == {}


def test_cirr_metrics_count_ties_against_the_target(tmp_path):
    split = load_cirr(make_cirr(tmp_path), "val")
    # all scores equal: every other candidate ties with the target -> rank 59 (gallery minus reference), subset rank 5
    metrics = compute_metrics(split, torch.zeros(4, 60))
    assert metrics["recall@50"] == 0.0 and metrics["recall_subset@3"] == 0.0


def test_fashioniq_metrics_by_hand(tmp_path):
    split = load_fashioniq(make_fashioniq(tmp_path), "val", "dress")
    # reference kept: targets at columns 2, 11, 0 -> ranks 3, 12, 1
    assert compute_metrics(split, _gallery_order(split)) == {"recall@10": 66.67, "recall@50": 100.0}


def test_circo_metrics_by_hand(tmp_path):
    split = load_circo(make_circo(tmp_path), "val")
    scores = _gallery_order(split)
    scores[1] *= -1  # query 1 ranks the gallery in reverse
    # q0 (reference kept at rank 1): positives at columns 1, 3, 20 -> ranks 2, 4, 21;
    #   AP@5 = AP@10 = (1/2 + 2/4) / 3 = 1/3, AP@25 = AP@50 = (1/2 + 2/4 + 3/21) / 3 = 8/21
    # q1: positives at columns 0 and 59 -> ranks 60 and 1: AP@K = (1/1) / 2 = 1/2; its target (column 0) is missed
    assert compute_metrics(split, scores) == {
        "map@5": round(100 * (1 / 3 + 1 / 2) / 2, 2),
        "map@10": 41.67,
        "map@25": round(100 * (8 / 21 + 1 / 2) / 2, 2),
        "map@50": 44.05,
        "recall@5": 50.0,
        "recall@10": 50.0,
        "recall@25": 50.0,
        "recall@50": 50.0,
    }


def test_genecis_metrics_use_each_querys_gallery(tmp_path):
    split = load_genecis(make_genecis(tmp_path), "focus_attribute")
    # union gallery: 12@0,0,8,8 | 12@20,2,5.5,6 | 13@1,1,4,4 | 11@10,5,10,4 | 11@0,0,3,3
    # q0's target 12@0,0,8,8 is beaten by 12@20,2,5.5,6 and tied with 11@10,5,10,4 -> rank 3
    #   (11@0,0,3,3 scores higher but is not in q0's gallery); q1's target 12@20,2,5.5,6 -> rank 1
    scores = np.array([[0.5, 0.9, 0.1, 0.5, 0.99], [0.2, 0.8, 0.3, 0.3, 0.1]])
    assert compute_metrics(split, scores) == {"recall@1": 50.0, "recall@2": 50.0, "recall@3": 100.0}
    assert top_k_ids(split, scores, 2) == [["12@20,2,5.5,6", "12@0,0,8,8"], ["12@20,2,5.5,6", "12@0,0,8,8"]]


def test_top_k_ids_follow_the_protocol(tmp_path):
    split = load_cirr(make_cirr(tmp_path), "val")
    top = top_k_ids(split, _gallery_order(split), 3)
    assert top[0] == ["dev-1-0-img1", "dev-2-0-img0", "dev-3-0-img1"]  # reference dev-0 removed
    subset = top_k_ids(split, _gallery_order(split), 3, within_subset=True)
    assert subset[1] == ["dev-1-0-img1", "dev-2-0-img0", "dev-3-0-img1"]  # img_set minus the reference dev-5
    fiq = load_fashioniq(make_fashioniq(tmp_path / "fiq"), "val", "dress")
    assert top_k_ids(fiq, _gallery_order(fiq), 1) == [["B00DRESS00"]] * 3  # the reference stays


def test_scoring_rejects_a_score_matrix_of_the_wrong_shape(tmp_path):
    split = load_cirr(make_cirr(tmp_path), "val")
    with pytest.raises(ValueError, match=r"scores have shape \(4, 59\), expected \(queries, gallery\) = \(4, 60\)"):
        compute_metrics(split, np.zeros((4, 59)))


# ----------------------------------------------------------------------------------------- evaluate metric

SCORES = [[0.9, 0.5, 0.5, 0.1], [0.2, 0.8, 0.3, 0.8], [0.7, 0.7, 0.7, 0.7]]
TARGETS = [1, 3, 2]


def test_evaluate_metric_loads_offline_from_its_folder():
    metric = evaluate.load(str(METRIC_PATH))
    # ranks without exclusions: 3 (ties with item 2), 2 (tie with item 1), 4 (ties with everything)
    result = metric.compute(predictions=SCORES, references=TARGETS, ks=[1, 2, 3, 4])
    assert result == {"recall@1": 0.0, "recall@2": 33.33, "recall@3": 66.67, "recall@4": 100.0}
    subsets = [[1, 0, 3], [3, 2], [2, 1, 3]]
    exclude = [0, 1, [0, 3]]
    result = metric.compute(
        predictions=SCORES, references=TARGETS, ks=[1], exclude_ids=exclude, subset_ids=subsets, subset_ks=[1, 2]
    )
    # as test_world's recall tests: ranks with exclusions 2, 1, 2; subset ranks 1, 1, 2
    assert result == {"recall@1": 33.33, "recall_subset@1": 66.67, "recall_subset@2": 100.0}
    assert recall_at_k(SCORES, TARGETS, exclude, (1,))[1] == pytest.approx(100 / 3)
    assert recall_subset_at_k(SCORES, TARGETS, subsets, exclude, (1,))[1] == pytest.approx(200 / 3)


def test_evaluate_metric_takes_rankings():
    metric = load_cir_metric("rankings")
    rankings = [[0, 2, 1, 3], [3, 1, 2, 0]]
    # q0: target 1 at 3, or 2 without the excluded 0; q1: target 3 at 1
    assert metric.compute(predictions=rankings, references=[1, 3], ks=[1, 2]) == {"recall@1": 50.0, "recall@2": 50.0}
    assert metric.compute(predictions=rankings, references=[1, 3], ks=[2], exclude_ids=[0, []]) == {"recall@2": 100.0}
    with pytest.raises(ValueError, match="config_name"):
        load_cir_metric("ranks")


def test_compute_metrics_for_trainer():
    compute = build_compute_metrics(ks=(1, 2))
    logits = np.asarray(SCORES)
    prediction = EvalPrediction(predictions=(logits, np.zeros(3)), label_ids=np.asarray(TARGETS))
    assert compute(prediction) == {"recall@1": 0.0, "recall@2": 33.33}
