"""`scot train` on a small triplet dataset and the tiny CLIP."""

import json

import numpy as np
import pytest
from datasets import DatasetDict

from modeling_scot import ScotModel
from modeling_scot.cli import main
from modeling_scot.evaluation.metrics import text_target_recall
from modeling_scot.cli.common import parse_dataclasses
from modeling_scot.training import ScotTrainArguments, ScotTrainingArguments, fit_combiner, load_triplets


@pytest.fixture
def triplet_folder(triplet_dataset, tmp_path):
    validation_sources = {"img-3"}
    splits = DatasetDict(
        train=triplet_dataset.filter(lambda row: row["source_id"] not in validation_sources),
        validation=triplet_dataset.filter(lambda row: row["source_id"] in validation_sources),
    )
    folder = tmp_path / "triplets"
    splits.save_to_disk(str(folder))
    return folder


def test_train_saves_the_best_model_and_reports_validation_recall(tiny_clip_dir, triplet_folder, tmp_path, capsys):
    output = tmp_path / "run"
    argv = ["train", "--clip", tiny_clip_dir, "--dataset", str(triplet_folder), "--output", str(output),
            "--batch-size", "4", "--num_train_epochs", "2", "--logging_steps", "1", "--combiner-only"]
    assert main(argv) == 0
    metrics = json.loads((output / "train_results.json").read_text())
    assert {"train_loss", "eval_recall@1", "eval_recall@5", "eval_loss"} <= set(metrics)
    model = ScotModel.from_pretrained(output / "model")
    assert model.config.encoder_name_or_path == tiny_clip_dir
    card = (output / "model" / "README.md").read_text()
    assert str(triplet_folder) in card
    state = json.loads(sorted((output / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert state["best_metric"] is not None and state["best_model_checkpoint"]

    assert main([*argv, "--resume", "--num_train_epochs", "3"]) == 0
    state = json.loads(sorted((output / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert state["epoch"] == 3.0


def test_training_options_are_the_dataclass_fields():
    argv = ["--clip", "enc", "--dataset", "data", "--output", "out", "--num_train_epochs", "7", "--batch-size", "32"]
    train_args, args = parse_dataclasses("scot train", None, (ScotTrainArguments, ScotTrainingArguments), argv)
    assert train_args.encoder == "enc" and train_args.temperature == 0.05 and train_args.combiner_only is False
    assert args.num_train_epochs == 7 and args.per_device_train_batch_size == 32
    assert args.learning_rate == 1e-3 and args.lr_scheduler_type == "cosine" and args.remove_unused_columns is False
    _, defaults = parse_dataclasses("scot train", None, (ScotTrainArguments, ScotTrainingArguments), argv[:6])
    assert defaults.num_train_epochs == 10 and defaults.per_device_train_batch_size == 256


def test_unused_columns_cannot_be_removed(scot_model, triplet_dataset, tmp_path):
    args = ScotTrainingArguments(output_dir=str(tmp_path), remove_unused_columns=True, use_cpu=True)
    with pytest.raises(ValueError, match="remove_unused_columns must be False"):
        fit_combiner(scot_model, triplet_dataset, args, tmp_path / "cache")


def test_train_help_lists_the_dataclass_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--encoder ENCODER, --clip ENCODER" in out and "--num_train_epochs" in out and "(default: 256)" in out


@pytest.mark.parametrize("flag", ["--output_dir", "--output-dir"])
def test_train_refuses_output_dir_which_output_sets(flag, tmp_path, capsys):
    code = main(["train", "--encoder", "org/clip", "--dataset", str(tmp_path), "--output", str(tmp_path / "run"), flag, str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "give --output, not --output_dir" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "x").exists()


def test_load_triplets_errors(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_triplets(str(tmp_path / "file.txt"))


def test_text_target_recall_merges_duplicate_targets():
    queries = np.eye(3)
    targets = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    assert text_target_recall(queries, targets, (1, 2)) == {"recall@1": pytest.approx(200 / 3), "recall@2": 100.0}
