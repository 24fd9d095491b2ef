"""bench/remove_probe.py: remove triplets are what they claim, and the probe reports every input and the oracle."""

import json

from bench.remove_probe import INPUTS, main, remove_triplets
from modeling_scot.world.captions import parse_caption
from modeling_scot.world.split import is_test_combination, is_test_scene


def test_remove_triplets_remove_one_object_of_a_training_scene():
    columns = remove_triplets(50, seed=3)
    assert len(columns["reference"]) == 50 and len(columns["negatives"]) == 150
    for reference, target_text, caption_text, removed_text in zip(
        columns["reference"], columns["target"], columns["caption"], columns["removed"]
    ):
        target, (removed,) = parse_caption(target_text), parse_caption(removed_text).objects
        assert parse_caption(caption_text) == reference
        assert reference.without(removed) == target
        assert not is_test_scene(reference) and not is_test_scene(target)
        assert not is_test_combination(reference, target)


def test_probe_reports_each_input_and_the_removed_object_helps(tmp_path):
    output = tmp_path / "probe.json"
    assert main(["--triplets", "600", "--held-out", "128", "--steps", "60", "--batch-size", "128", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    ranking = report["probes"]
    assert report["validation_remove_queries"] > 50 and 0 < report["oracle_validation_remove_recall@1"] <= 100
    assert set(ranking) == set(INPUTS)
    assert all(0 <= value <= 100 for scores in ranking.values() for value in scores.values())
    assert ranking["image + removed object"]["held_out"] > ranking["image + modification"]["held_out"] + 20
