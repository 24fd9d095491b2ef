"""Model card rendering, upload validation and the push_model command line (no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import EvalResult
from safetensors.torch import save_file

from hub import push_model
from modeling_scot import hub_upload, model_card

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_FILES = ["config.json", "model.safetensors", "tokenizer.json"]
CLIP_CONFIG = {
    "model_type": "clip",
    "projection_dim": 16,
    "text_config": {"hidden_size": 32},
    "vision_config": {"hidden_size": 32},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def scot_config(**overrides) -> dict:
    config = {
        "model_type": "scot",
        "encoder_config": CLIP_CONFIG,
        "encoder_name_or_path": "openai/clip-vit-base-patch32",
        "combiner_only": True,
        "combiner_projection_dim": None,
        "combiner_hidden_dim": None,
        "combiner_dropout": 0.1,
        "temperature": 0.05,
        "learnable_temperature": False,
        "hard_negative_weight": 1.0,
        "caption_negative_weight": 0.5,
        "scot_version": "0.1.0",
        "auto_map": {"AutoConfig": "configuration_scot.ScotConfig", "AutoModel": "modeling_scot.ScotModel"},
    }
    return {**config, **overrides}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(scot_config()))
    save_file({"combiner.weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "model.safetensors.lock").write_text("")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0")
    (folder / "x.tmp").write_text("partial")
    return folder


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


# ----- files to upload and validation ---------------------------------------------------------------


def test_dry_run_lists_only_model_files(model_dir):
    assert hub_upload.model_files_to_upload(model_dir) == EXPECTED_FILES
    assert hub_upload.upload_model_folder(model_dir, "org/scot-test", dry_run=True) == EXPECTED_FILES


def test_cli_dry_run_prints_files_and_uploads_nothing(model_dir, capsys):
    assert push_model.main(["--model", str(model_dir), "--repo-id", "org/scot-test", "--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[-1] for line in out.splitlines()[: len(EXPECTED_FILES)]]
    assert listed == EXPECTED_FILES
    assert "total, 3 files" in out
    assert "nothing was uploaded" in out
    assert "x.tmp" not in out and "checkpoint-10" not in out and ".cache" not in out


def test_cli_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        push_model.main(["--help"])
    assert exit_info.value.code == 0
    assert "--repo-id" in capsys.readouterr().out


def test_refuses_pickle_weights(model_dir, capsys):
    (model_dir / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        hub_upload.upload_model_folder(model_dir, "org/scot-test", dry_run=True)
    assert push_model.main(["--model", str(model_dir), "--repo-id", "org/scot-test", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.bin" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_refuses_non_scot_config(model_dir):
    (model_dir / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="model_type 'clip'"):
        hub_upload.upload_model_folder(model_dir, "org/scot-test", dry_run=True)


def test_refuses_folder_without_weights(model_dir):
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        hub_upload.upload_model_folder(model_dir, "org/scot-test", dry_run=True)


def test_refuses_missing_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        hub_upload.upload_model_folder(missing, "org/scot-test", dry_run=True)
    assert push_model.main(["--model", str(missing), "--repo-id", "org/scot-test", "--dry-run"]) == 2
    assert "no-such-model" in capsys.readouterr().err


@pytest.mark.parametrize("repo_id", ["org/team/scot", "bad name", "-scot", "org/sc..ot", ""])
def test_refuses_bad_repo_id(model_dir, repo_id):
    with pytest.raises(ValueError, match="invalid repo_id"):
        hub_upload.upload_model_folder(model_dir, repo_id, dry_run=True)


def test_upload_sends_exactly_the_listed_files(model_dir, monkeypatch):
    calls = {}

    class FakeRepoUrl:
        repo_id = "org/scot-test"

    class FakeCommit:
        commit_url = "https://huggingface.co/org/scot-test/commit/abc"

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = (repo_id, kwargs)
            return FakeRepoUrl()

        def upload_folder(self, **kwargs):
            calls["upload_folder"] = kwargs
            return FakeCommit()

    monkeypatch.setattr(hub_upload, "HfApi", FakeApi)
    url = hub_upload.upload_model_folder(model_dir, "org/scot-test", private=True, token="t")
    assert url == FakeCommit.commit_url
    assert calls["token"] == "t"
    assert calls["create_repo"] == ("org/scot-test", {"private": True, "exist_ok": True})
    assert calls["upload_folder"]["allow_patterns"] == EXPECTED_FILES
    assert calls["upload_folder"]["repo_id"] == "org/scot-test"
    assert Path(calls["upload_folder"]["folder_path"]) == model_dir


# ----- model card -----------------------------------------------------------------------------------


def test_template_ships_inside_the_package():
    link = REPO_ROOT / "modeling_scot" / "MODEL_CARD.md"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (REPO_ROOT / "MODEL_CARD.md").resolve()
    assert model_card.TEMPLATE_PATH == link


def test_card_front_matter():
    text = model_card.render_model_card(scot_config(), repo_id="org/scot-test", datasets=["org/triplets"])
    meta = front_matter(text)
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert meta["library_name"] == "transformers"
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "openai/clip-vit-base-patch32"
    assert meta["datasets"] == ["org/triplets"]
    assert {"composed-image-retrieval", "zero-shot-composed-image-retrieval", "clip", "scot"} <= set(meta["tags"])


def test_card_body_reports_dims_and_combiner_only():
    text = model_card.render_model_card(scot_config(), repo_id="org/scot-test")
    assert "**Embedding dimension:** 16" in text
    assert "projection dimension 32, hidden dimension 32" in text
    assert "combiner only" in text
    assert 'ScotModel.from_pretrained("org/scot-test")' in text
    assert "trust_remote_code=True" in text
    assert "{{" not in text.split("```bibtex")[0]


def test_card_of_full_model_without_encoder_id():
    config = scot_config(
        encoder_name_or_path=None,
        combiner_only=False,
        encoder_config={"model_type": "siglip", "text_config": {"hidden_size": 24}},
    )
    text = model_card.render_model_card(config)
    meta = front_matter(text)
    assert "base_model" not in meta and "siglip" in meta["tags"]
    assert "**Embedding dimension:** 24" in text
    assert "**Weights:** complete" in text
    assert "**Triplets:** not recorded" in text


def test_card_training_and_results():
    results = [
        {"dataset_name": "CIRR", "dataset_split": "test", "metric_type": "recall_at_1", "metric_value": 25.5},
        EvalResult(
            task_type="image-feature-extraction",
            dataset_type="fashion-iq",
            dataset_name="FashionIQ",
            metric_type="recall_at_10",
            metric_value=30.0,
        ),
    ]
    training = {"num_triplets": 1000, "epochs": 3, "batch_size": 256, "seed": 7}
    text = model_card.render_model_card(scot_config(), training=training, eval_results=results)
    assert "**Triplets:** 1000" in text and "**Epochs:** 3" in text and "**Batch size:** 256" in text
    assert "**seed:** 7" in text
    assert "| CIRR | test | recall_at_1 | 25.5 |" in text
    assert "| FashionIQ | - | recall_at_10 | 30.0 |" in text
    assert "original caption 0.5" in text


def test_card_refuses_bad_eval_result():
    with pytest.raises(ValueError, match=r"eval_results\[0\]"):
        model_card.render_model_card(scot_config(), eval_results=[{"dataset_name": "CIRR"}])


def test_write_model_card_is_atomic(tmp_path):
    path = model_card.write_model_card(tmp_path, scot_config(), repo_id="org/scot-test")
    assert path == tmp_path / "README.md"
    assert path.read_text(encoding="utf-8") == model_card.render_model_card(scot_config(), repo_id="org/scot-test")
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_write_model_card_without_template(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(model_card, "TEMPLATE_PATH", tmp_path / "missing" / "MODEL_CARD.md")
    with caplog.at_level("INFO", logger=model_card.__name__):
        assert model_card.write_model_card(tmp_path, scot_config()) is None
    assert not (tmp_path / "README.md").exists()
    assert "template" in caplog.text


# ----- benchmark results into the model-index --------------------------------------------------------------

CIRR_REPORT = {
    "benchmark": "cirr",
    "split": "val",
    "category": None,
    "methods": {"scot": {"recall@1": 30.5, "recall_subset@1": 60.25}, "image": {"recall@1": 7.0, "recall_subset@1": 20.0}},
}
FIQ_REPORT = {
    "benchmark": "fashioniq",
    "split": "val",
    "category": None,
    "methods": {"scot": {"dress/recall@10": 20.0, "shirt/recall@10": 24.0, "average/recall@10": 22.0}},
}


def test_results_from_scot_eval_reports_go_into_the_model_index(tmp_path, capsys):
    model_card.write_model_card(tmp_path, scot_config(), repo_id="org/scot-test", training={"epochs": 3})
    reports = []
    for name, report in (("cirr.json", CIRR_REPORT), ("fiq.json", FIQ_REPORT)):
        (tmp_path / name).write_text(json.dumps(report))
        reports.append(str(tmp_path / name))
    from hub import add_results

    assert add_results.main(["--model", str(tmp_path), "--results", *reports]) == 0
    assert "recorded 5 result(s)" in capsys.readouterr().out
    text = (tmp_path / "README.md").read_text()
    meta = front_matter(text)
    [entry] = meta["model-index"]
    assert entry["name"] == "scot-test"
    rows = {
        (r["dataset"]["type"], r["dataset"].get("config"), r["dataset"].get("split"), m["type"]): m["value"]
        for r in entry["results"]
        for m in r["metrics"]
    }
    assert rows == {
        ("cirr", None, "val", "recall@1"): 30.5,
        ("cirr", None, "val", "recall_subset@1"): 60.25,
        ("fashion-iq", "dress", "val", "recall@10"): 20.0,
        ("fashion-iq", "shirt", "val", "recall@10"): 24.0,
        ("fashion-iq", "average", "val", "recall@10"): 22.0,
    }
    assert "| CIRR | val | Recall@1 | 30.5 |" in text and "| FashionIQ (average) | val | Recall@10 | 22.0 |" in text
    assert "No evaluation results" not in text and "**Epochs:** 3" in text and "## Limitations" in text

    # a newer run replaces the same metric instead of adding a second row
    newer = {**CIRR_REPORT, "methods": {"scot": {"recall@1": 31.0}}}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    assert add_results.main(["--model", str(tmp_path), "--results", str(tmp_path / "newer.json")]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| CIRR | val | Recall@1 | 31.0 |" in text and "| 30.5 |" not in text
    assert sum(len(r["metrics"]) for r in front_matter(text)["model-index"][0]["results"]) == 5


def test_add_results_errors_are_one_line(tmp_path, capsys):
    from hub import add_results

    (tmp_path / "bad.json").write_text(json.dumps({"benchmark": "imagenet", "methods": {}}))
    assert add_results.main(["--model", str(tmp_path), "--results", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and "imagenet" in err
    (tmp_path / "ok.json").write_text(json.dumps(CIRR_REPORT))
    assert add_results.main(["--model", str(tmp_path), "--results", str(tmp_path / "ok.json"), "--method", "lincir"]) == 2
    assert "lincir" in capsys.readouterr().err
    assert add_results.main(["--model", str(tmp_path), "--results", str(tmp_path / "ok.json")]) == 2
    assert "save_pretrained" in capsys.readouterr().err


def test_add_results_refuses_values_that_are_not_finite_numbers(tmp_path, capsys):
    from hub import add_results

    model_card.write_model_card(tmp_path, scot_config())
    for metrics, message in (({"recall@1": float("nan")}, "not a finite number"), ({"recall@1": "abc"}, "not a finite number"), ({}, "no metrics")):
        (tmp_path / "r.json").write_text(json.dumps({**CIRR_REPORT, "methods": {"scot": metrics}}))
        assert add_results.main(["--model", str(tmp_path), "--results", str(tmp_path / "r.json")]) == 2
        assert message in capsys.readouterr().err
    assert "model-index" not in (tmp_path / "README.md").read_text()
