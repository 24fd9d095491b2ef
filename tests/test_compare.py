"""`scot compare`: every method trained on the same world data, tested side by side, summarised over seeds."""

import json

import pytest

from modeling_scot.cli import main
from modeling_scot.compare import CompareSettings, comparison_table, summarise
from modeling_scot.evaluation.world import evaluate_world
from modeling_scot.methods import DEFAULT_METHOD_NAMES
from modeling_scot.modeling_scot import ScotModel
from modeling_scot.world import clip_path

TINY = ["--num_scenes", "130", "--edits_per_scene", "2", "--scot_epochs", "1", "--tat_epochs", "1",
        "--lincir_steps", "1", "--isa_epochs", "1", "--test_queries", "10"]  # fmt: skip
METHODS = [*DEFAULT_METHOD_NAMES, "tat+slerp", "lincir", "isa"]


def _row(recall: float) -> dict:
    return {"recall@1": recall, "recall@5": 2 * recall, "recall_subset@1": recall, "recall@1_by_edit_type": {"add": recall},
            "settings": {"chosen_by": "benchmark"}, "train_seconds": 1.0, "trainable_parameters": 7, "gflops": 0.5,
            "latency_ms": 3.0}  # fmt: skip


def test_summary_is_mean_spread_and_per_seed_values():
    summary = summarise(CompareSettings(seeds=[0, 1]), {0: {"scot": _row(50.0)}, 1: {"scot": _row(54.0)}})
    scot = summary["methods"]["scot"]
    assert summary["seeds"] == [0, 1]
    assert scot["recall@1"] == {"mean": 52.0, "std": 2.83, "per_seed": [50.0, 54.0]}
    assert scot["recall@1_by_edit_type"]["add"]["mean"] == 52.0
    assert (scot["trainable_parameters"], scot["query_gflops"]) == (7, 0.5)
    table = comparison_table(summary)
    assert "52.0±2.8" in table and "R@1 add" in table.splitlines()[1] and "settings of" not in table
    slerp = [_row(30.0) | {"settings": {"alpha": alpha, "chosen_by": "validation"}} for alpha in (0.4, 0.3)]
    summary = summarise(CompareSettings(seeds=[0, 1]), {0: {"slerp": slerp[0]}, 1: {"slerp": slerp[1]}})
    assert comparison_table(summary).splitlines()[-1] == "settings of slerp: alpha=0.4 / alpha=0.3 (seeds [0, 1]; validation)"


@pytest.mark.parametrize(
    "options, message",
    [(["--seeds", "0", "0"], "distinct"), (["--lincir_steps", "0"], "--lincir-steps must be >= 1"),
     (["--tat_epochs", "0"], "--tat-epochs must be > 0"), (["--test_queries", "0"], "--test-queries")],
)  # fmt: skip
def test_bad_settings_are_one_clear_line(options, message, capsys):
    assert main(["compare", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_compare_trains_every_method_and_its_rows_recompute(tmp_path, capsys):
    output = tmp_path / "summary.json"
    code = main(["compare", "--seeds", "3", *TINY, "--work_dir", str(tmp_path / "work"), "--output", str(output)])
    assert code == 0
    summary = json.loads(output.read_text())
    assert summary["seeds"] == [3] and list(summary["methods"]) == METHODS
    for name, row in summary["methods"].items():
        assert set(row["recall@1"]) == {"mean", "std", "per_seed"} and len(row["recall@1"]["per_seed"]) == 1
        assert row["query_gflops"] > 0 and row["query_latency_ms"]["mean"] > 0
        assert (row["trainable_parameters"] > 0) == (name in ("scot", "tat+slerp", "lincir", "isa")), name
    assert "tat+slerp" in capsys.readouterr().out
    isa, image = summary["methods"]["isa"], summary["methods"]["image"]
    assert isa["query_gflops"] < image["query_gflops"]  # the query never runs the large image tower
    # the image-only row is the harness's own, on the untouched encoder
    image = evaluate_world(ScotModel.from_encoder(clip_path()), 3, ("image",), cache_dir=tmp_path / "e",
                           num_queries=10, progress=False)  # fmt: skip
    assert summary["methods"]["image"]["recall@1"]["mean"] == image["methods"]["image"]["recall@1"]
    # rerun: every method resumes from its finished work and gives the same table
    assert main(["compare", "--seeds", "3", *TINY, "--work_dir", str(tmp_path / "work"), "--output", str(output)]) == 0
    again = json.loads(output.read_text())
    for name in METHODS:
        for key in ("recall@1", "recall_subset@1", "train_seconds"):  # the finished training's seconds, kept
            assert again["methods"][name][key] == summary["methods"][name][key], (name, key)
