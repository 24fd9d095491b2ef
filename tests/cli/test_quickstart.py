"""The offline quickstart and `scot eval --benchmark world` on the shipped world CLIP (small sizes)."""

import json
from collections import Counter

import pytest
from huggingface_hub import ModelCard

from modeling_scot import ScotModel, world
from modeling_scot.cli import main
from modeling_scot.triplets import TripletRecord
from modeling_scot.world import build_benchmark, train_test_overlap

SMALL = ["--num-scenes", "150", "--epochs", "2", "--test-queries", "40"]
METRIC_KEYS = {"recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1", "recall_subset@2", "recall_subset@3"}


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart")
    assert main(["quickstart", "--output", str(output), "--seed", "3", *SMALL]) == 0
    return output


def test_world_clip_ships_with_the_package():
    folder = world.clip_path()
    assert (folder / "model.safetensors").stat().st_size <= 20 * 2**20
    assert "Apache-2.0" in (folder / "README.md").read_text()
    model = ScotModel.from_clip(folder)
    assert model.processor is not None and model.config.embed_dim > 0


def test_quickstart_writes_results_and_a_loadable_model(quickstart_run, capsys):
    results = json.loads((quickstart_run / "results.json").read_text())
    assert results["seed"] == 3 and results["test_queries"] == 40 and results["train_triplets"] > 400
    assert set(results["methods"]) == {"scot", "image", "text", "sum", "slerp", "oracle"}
    for metrics in results["methods"].values():
        assert METRIC_KEYS <= set(metrics) and all(0.0 <= value <= 100.0 for value in metrics.values())
    assert 0.1 <= results["settings_by_method"]["slerp"]["alpha"] <= 0.9
    assert results["settings_by_method"]["slerp"]["chosen_by"] == "validation"
    queries_per_type = Counter(query.edit_type for query in build_benchmark(results["seed"], results["test_queries"]).queries)
    assert set(results["recall@1_by_edit_type"]) == set(results["methods"])
    for method, by_type in results["recall@1_by_edit_type"].items():
        assert set(by_type) == set(queries_per_type)
        weighted = sum(by_type[name] * count for name, count in queries_per_type.items()) / results["test_queries"]
        assert abs(weighted - results["methods"][method]["recall@1"]) < 0.05, method
    stages = results["stage_seconds"]
    assert list(stages) == ["triplets", "load model", "train", "evaluate", "save model"]
    assert all(seconds >= 0 for seconds in stages.values()) and sum(stages.values()) <= results["seconds"] + 0.5
    model = ScotModel.from_pretrained(quickstart_run / "model")
    assert model.processor is not None
    card = ModelCard.load(quickstart_run / "model" / "README.md")
    recorded = {(r.dataset_type, r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert recorded[("scot-world", "seed-3", "recall@1")] == results["methods"]["scot"]["recall@1"]
    assert len(recorded) == len(results["methods"]["scot"])


def test_training_never_sees_a_test_scene_or_combination(quickstart_run):
    """Zero-shot is real: no triplet's reference or target scene is a benchmark scene, no change is held out,
    and the training images are only the triplets' reference scenes."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(quickstart_run / "work" / "triplets" / "data"))
    records = [TripletRecord(**{**row, "image": None}) for row in dataset.remove_columns("image")]
    overlap = train_test_overlap(records, build_benchmark(3, 40))
    assert overlap["records"] == len(dataset)
    assert overlap["shared_scenes"] == overlap["test_partition_scenes"] == overlap["held_out_combinations"] == 0


def test_eval_reproduces_the_quickstart_numbers(quickstart_run, tmp_path, capsys):
    results = json.loads((quickstart_run / "results.json").read_text())
    output = tmp_path / "eval.json"
    code = main(
        ["eval", "--model", str(quickstart_run / "model"), "--benchmark", "world", "--seed", "3",
         "--test-queries", "40", "--method", "scot", "--method", "image", "--output", str(output)]
    )
    assert code == 0
    report = json.loads(output.read_text())
    assert set(report["methods"]) == {"scot", "image", "oracle"}
    assert report["methods"]["scot"] == results["methods"]["scot"]
    assert report["methods"]["image"] == results["methods"]["image"]


def test_quickstart_resumes_from_finished_work(quickstart_run, capsys):
    dataset_files = sorted((quickstart_run / "work" / "triplets" / "data").glob("*.arrow"))
    stamps = [path.stat().st_mtime_ns for path in dataset_files]
    assert main(["quickstart", "--output", str(quickstart_run), "--seed", "3", *SMALL]) == 0
    assert [path.stat().st_mtime_ns for path in dataset_files] == stamps
