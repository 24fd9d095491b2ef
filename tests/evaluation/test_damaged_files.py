"""Property tests: benchmark annotation files and `scot score` prediction files, damaged at random, load (or
score) or fail with a ValueError naming a file of the dataset, never with another error."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.evaluation.benchmark_fixtures import make_circo, make_cirr, make_fashioniq, make_genecis
from tests.evaluation.mutations import mutate_json_file

from modeling_scot.evaluation.circo import load_circo
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.fashioniq import load_fashioniq
from modeling_scot.evaluation.genecis import load_genecis
from modeling_scot.evaluation.submissions import score_submission, write_circo_submission, write_cirr_submissions

PROPERTY = settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
SPLITS = ("val", "test")
GENECIS_TASKS = ("focus_attribute", "change_object")
LOADERS = {
    "cirr": (make_cirr, [lambda root, split=split: load_cirr(root, split) for split in ("val", "test1", "train")]),
    "fashioniq": (make_fashioniq, [lambda root, split=split: load_fashioniq(root, split, "dress") for split in SPLITS]),
    "circo": (make_circo, [lambda root, split=split: load_circo(root, split) for split in SPLITS]),
    "genecis": (make_genecis, [lambda root, task=task: load_genecis(root, task) for task in GENECIS_TASKS]),
}


def drawer(data: st.DataObject):
    """`choose` for the mutations: one hypothesis draw from the options."""
    return lambda options: data.draw(st.sampled_from(list(options)))


def assert_names_a_file(error: ValueError, root: Path) -> None:
    assert re.search(re.escape(str(root)) + r"\S*\.json", str(error)), str(error)


class Damaged:
    """A file damaged for one example and restored afterwards."""

    def __init__(self, path: Path):
        self.path, self.original = path, path.read_bytes()

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.original)


@pytest.fixture(scope="module")
def benchmark_roots(tmp_path_factory) -> dict[str, Path]:
    return {name: make(tmp_path_factory.mktemp(name)) for name, (make, _) in LOADERS.items()}


@pytest.mark.parametrize("name", sorted(LOADERS))
@PROPERTY
@given(data=st.data())
def test_damaged_annotation_files_load_or_name_the_file(benchmark_roots, name, data):
    root = benchmark_roots[name]
    file = data.draw(st.sampled_from(sorted(root.rglob("*.json"))))
    with Damaged(file):
        mutate_json_file(file, drawer(data))
        for load in LOADERS[name][1]:
            try:
                split = load(root)
            except ValueError as error:
                assert_names_a_file(error, root)
            else:
                assert all(isinstance(query.text, str) and query.reference in split.image_paths for query in split.queries)


@pytest.fixture(scope="module")
def submission_files(tmp_path_factory) -> dict[str, tuple[Path, Path, Path | None]]:
    root = tmp_path_factory.mktemp("submissions")
    cirr, circo = make_cirr(root / "cirr"), make_circo(root / "circo")
    cirr_val, circo_val = load_cirr(cirr, "val"), load_circo(circo, "val")
    rng = np.random.default_rng(0)
    cirr_scores, circo_scores = (rng.normal(size=(len(s.queries), len(s.gallery))) for s in (cirr_val, circo_val))
    recall, subset = write_cirr_submissions(cirr_val, cirr_scores, root / "out")
    circo_file = write_circo_submission(circo_val, circo_scores, root / "out" / "circo.json")
    return {
        "cirr": (cirr / "captions" / "cap.rc2.val.json", recall, subset),
        "circo": (circo / "annotations" / "val.json", circo_file, None),
    }


@pytest.mark.parametrize("name", ["cirr", "circo"])
@PROPERTY
@given(data=st.data())
def test_damaged_submissions_score_or_name_the_file(submission_files, name, data):
    annotations, predictions, subset = submission_files[name]
    files = [path for path in (annotations, predictions, subset) if path is not None]
    file = data.draw(st.sampled_from(files))
    with Damaged(file):
        mutate_json_file(file, drawer(data))
        try:
            metrics = score_submission(name, annotations, predictions, subset)
        except ValueError as error:
            assert_names_a_file(error, Path(os.path.commonpath(files)))
        else:
            assert metrics and all(math.isfinite(value) and 0 <= value <= 100 for value in metrics.values())


def test_cirr_split_file_with_an_empty_path_names_the_file(tmp_path):
    root = make_cirr(tmp_path / "cirr")
    split_file = root / "image_splits" / "split.rc2.train.json"
    split_file.write_text('{"train-1-0-img0": "", "train-1-0-img1": "./train/34/train-1-0-img1.png"}')
    with pytest.raises(ValueError, match=r"split\.rc2\.train\.json: entry train-1-0-img0: expected a relative path"):
        load_cirr(root, "train")
