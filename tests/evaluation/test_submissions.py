"""CIRR and CIRCO server files: writing, scoring them back, and every rejection naming its query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.evaluation.benchmark_fixtures import edit_json, make_circo, make_cirr

from modeling_scot.evaluation.circo import load_circo
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.scoring import compute_metrics
from modeling_scot.evaluation.submissions import score_submission, write_circo_submission, write_cirr_submissions
from modeling_scot.json_files import AnnotationError


def _random_scores(split, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(split.queries), len(split.gallery)))


@pytest.fixture
def cirr_val(tmp_path):
    return load_cirr(make_cirr(tmp_path / "cirr"), "val")


@pytest.fixture
def cirr_files(cirr_val, tmp_path) -> tuple[Path, Path]:
    return write_cirr_submissions(cirr_val, _random_scores(cirr_val, 0), tmp_path / "out")


@pytest.fixture
def circo_val(tmp_path):
    return load_circo(make_circo(tmp_path / "circo"), "val")


@pytest.fixture
def circo_file(circo_val, tmp_path) -> Path:
    return write_circo_submission(circo_val, _random_scores(circo_val, 0), tmp_path / "out" / "circo_val.json")


def test_cirr_files_follow_the_server_template(cirr_val, cirr_files, tmp_path):
    recall, subset = cirr_files
    assert (recall.name, subset.name) == ("cirr_val_recall.json", "cirr_val_recall_subset.json")
    assert sorted(tmp_path.joinpath("out").iterdir()) == [recall, subset]  # no temporary file left behind
    data = json.loads(recall.read_text())
    assert list(data)[:3] == ["version", "metric", "101"] and (data["version"], data["metric"]) == ("rc2", "recall")
    assert all(len(data[q.query_id]) == 50 and q.reference not in data[q.query_id] for q in cirr_val.queries)
    data = json.loads(subset.read_text())
    assert data["metric"] == "recall_subset"
    for query in cirr_val.queries:
        assert len(data[query.query_id]) == 3 and set(data[query.query_id]) <= set(query.subset) - {query.reference}
    assert "\n" not in recall.read_text().rstrip("\n")  # compact: the CIRR server takes at most 5 MB


def test_cirr_test1_files_are_written_without_targets(tmp_path):
    split = load_cirr(make_cirr(tmp_path / "cirr"), "test1")
    recall, subset = write_cirr_submissions(split, _random_scores(split, 1), tmp_path / "out")
    assert set(json.loads(recall.read_text())) == {"version", "metric", "27098", "27099"}
    assert len(json.loads(subset.read_text())["27098"]) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cirr_round_trip_gives_the_scoring_numbers(cirr_val, tmp_path, seed):
    scores = _random_scores(cirr_val, seed)
    recall, subset = write_cirr_submissions(cirr_val, scores, tmp_path / f"out{seed}")
    assert score_submission("cirr", cirr_val.annotation_file, recall, subset) == compute_metrics(cirr_val, scores)
    only_recall = score_submission("cirr", cirr_val.annotation_file, recall)
    assert set(only_recall) == {"recall@1", "recall@5", "recall@10", "recall@50"}


def test_cirr_round_trip_by_hand(cirr_val, tmp_path):
    scores = -np.tile(np.arange(60.0), (4, 1))  # gallery order; numbers derived in test_cirr_metrics_by_hand
    recall, subset = write_cirr_submissions(cirr_val, scores, tmp_path / "hand")
    assert score_submission("cirr", cirr_val.annotation_file, recall, subset) == {
        "recall@1": 25.0,
        "recall@5": 50.0,
        "recall@10": 50.0,
        "recall@50": 75.0,
        "recall_subset@1": 50.0,
        "recall_subset@2": 50.0,
        "recall_subset@3": 75.0,
        "avg": 50.0,  # (recall@5 + recall_subset@1) / 2
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_circo_round_trip_gives_the_scoring_numbers(circo_val, tmp_path, seed):
    scores = _random_scores(circo_val, seed)
    path = write_circo_submission(circo_val, scores, tmp_path / f"circo{seed}.json")
    data = json.loads(path.read_text())
    assert set(data) == {"0", "1"} and all(len(v) == 50 and isinstance(v[0], int) for v in data.values())
    assert score_submission("circo", circo_val.annotation_file, path) == compute_metrics(circo_val, scores)


def test_writers_check_the_benchmark(cirr_val, circo_val, tmp_path):
    with pytest.raises(ValueError, match="expected a circo split, got cirr"):
        write_circo_submission(cirr_val, _random_scores(cirr_val, 0), tmp_path / "x.json")
    with pytest.raises(ValueError, match="expected a cirr split, got circo"):
        write_cirr_submissions(circo_val, _random_scores(circo_val, 0), tmp_path)


def _replace_first(ranking: list, value) -> None:
    ranking[0] = value


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _replace_first(d["102"], d["102"][1]), r"entry 102: lists '[^']+' more than once"),
        (lambda d: d["103"].pop(), r"entry 103: has 49 entries, expected 50"),
        (lambda d: d.update({"999": d["101"]}), r"unknown query ids: '999'"),
        (lambda d: d.pop("104"), r"missing queries: '104'"),
        (lambda d: _replace_first(d["101"], "dev-0-0-img0"), r"entry 101: ranks its reference image 'dev-0-0-img0'"),
        (lambda d: _replace_first(d["101"], 7), r"entry 101: expected a list of image ids"),
        (lambda d: d.update({"102": "dev-1-0-img1"}), r"entry 102: expected a list of image ids"),
        (lambda d: d.update(version="rc1"), r"field 'version': must be 'rc2', got 'rc1'"),
        (lambda d: d.pop("metric"), r"field 'metric': must be 'recall', got None"),
    ],
)
def test_bad_cirr_recall_files_name_the_offending_query(cirr_val, cirr_files, change, expected):
    recall, _ = cirr_files
    edit_json(recall, change)
    with pytest.raises(ValueError, match=expected) as caught:
        score_submission("cirr", cirr_val.annotation_file, recall)
    assert str(recall) in str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: _replace_first(d["102"], "dev-5-0-img1"),
            r"entry 102: ranks images outside img_set minus the reference: 'dev-5-0-img1'",
        ),
        (lambda d: _replace_first(d["103"], "dev-59-0-img1"), r"entry 103: ranks images outside .*'dev-59-0-img1'"),
        (lambda d: d["101"].append("dev-50-0-img0"), r"entry 101: has 4 entries, expected 3"),
        (lambda d: d.update(metric="recall"), r"field 'metric': must be 'recall_subset', got 'recall'"),
    ],
)
def test_bad_cirr_subset_files_name_the_offending_query(cirr_val, cirr_files, change, expected):
    recall, subset = cirr_files
    edit_json(subset, change)
    with pytest.raises(ValueError, match=expected):
        score_submission("cirr", cirr_val.annotation_file, recall, subset)


def test_malformed_json_and_repeated_keys_are_rejected(cirr_val, cirr_files):
    recall, _ = cirr_files
    text = recall.read_text()
    recall.write_text(text.replace('"102":', '"101":'))
    with pytest.raises(AnnotationError, match=r"entry 101: appears twice in one JSON object"):
        score_submission("cirr", cirr_val.annotation_file, recall)
    recall.write_text(text[:-10])
    with pytest.raises(AnnotationError, match="invalid JSON"):
        score_submission("cirr", cirr_val.annotation_file, recall)
    recall.write_text("[1, 2]")
    with pytest.raises(AnnotationError, match="expected a JSON object keyed by query id, got list"):
        score_submission("cirr", cirr_val.annotation_file, recall)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _replace_first(d["1"], d["1"][3]), r"entry 1: lists '\d+' more than once"),
        (lambda d: d["0"].pop(), r"entry 0: has 49 entries, expected 50"),
        (lambda d: d.update({"2": d["0"]}), r"unknown query ids: '2'"),
        (lambda d: d.pop("1"), r"missing queries: '1'"),
        (lambda d: _replace_first(d["0"], "a1000"), r"entry 0: expected a list of image ids"),
        (lambda d: _replace_first(d["0"], True), r"entry 0: expected a list of image ids"),
    ],
)
def test_bad_circo_files_name_the_offending_query(circo_val, circo_file, change, expected):
    edit_json(circo_file, change)
    with pytest.raises(ValueError, match=expected):
        score_submission("circo", circo_val.annotation_file, circo_file)


def test_circo_accepts_ids_written_as_digit_strings(circo_val, circo_file):
    expected = score_submission("circo", circo_val.annotation_file, circo_file)
    edit_json(circo_file, lambda d: d.update({key: [str(i) for i in value] for key, value in d.items()}))
    assert score_submission("circo", circo_val.annotation_file, circo_file) == expected


def test_score_submission_rejects_unknown_benchmarks(circo_val, circo_file):
    with pytest.raises(ValueError, match="benchmark must be 'cirr' or 'circo'"):
        score_submission("fashioniq", circo_val.annotation_file, circo_file)
    with pytest.raises(ValueError, match="no subset predictions"):
        score_submission("circo", circo_val.annotation_file, circo_file, circo_file)
