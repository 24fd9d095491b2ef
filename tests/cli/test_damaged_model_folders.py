"""Saved model folders damaged at random (config.json, model.safetensors, processor files) load through the
package's doors or fail with a ValueError naming the file; the CLI turns that into one `error:` line. Also the
bounds on the world benchmark's size and the quickstart's epochs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from tests.evaluation.mutations import mutate_json_file, mutate_weights

from modeling_scot import ScotModel
from modeling_scot.cli import main
from modeling_scot.evaluation.world import MAX_QUERIES
from modeling_scot.runtime import load_model

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json")


def drawer(data: st.DataObject):
    return lambda options: data.draw(st.sampled_from(list(options)))


@pytest.fixture(scope="module")
def saved_models(tiny_clip_dir, tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    model = ScotModel.from_clip(tiny_clip_dir)
    root = tmp_path_factory.mktemp("saved-models")
    model.save_pretrained(root / "full")
    model.save_pretrained(root / "combiner_only", combiner_only=True)
    return {"full": root / "full", "combiner_only": root / "combiner_only"}


def damaged_copy(source: Path, folder: Path, data: st.DataObject) -> Path:
    """A copy of `source` with one of its files damaged; returns that file."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    file = folder / data.draw(st.sampled_from(FILES))
    if file.suffix == ".safetensors":
        mutate_weights(file, drawer(data))
    else:
        mutate_json_file(file, drawer(data))
    return file


@pytest.mark.parametrize("save", ["full", "combiner_only"])
@PROPERTY
@given(data=st.data())
def test_damaged_model_folders_load_or_name_the_file(saved_models, tiny_clip_dir, tmp_path_factory, save, data):
    folder = tmp_path_factory.getbasetemp() / "damaged-model"
    damaged_copy(saved_models[save], folder, data)
    doors = [lambda: load_model(str(folder), "cpu", "fp32"), lambda: ScotModel.from_pretrained(folder)]
    load = data.draw(st.sampled_from(doors))
    try:
        model = load()
    except (ValueError, FileNotFoundError) as error:
        assert str(folder) in str(error) or tiny_clip_dir in str(error), str(error)
        return
    combiner = [tensor for name, tensor in model.state_dict().items() if not name.startswith("encoder.")]
    assert combiner and all(torch.isfinite(tensor).all() for tensor in combiner)


def _weights(folder: Path, change) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config) or config))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: _config(f, lambda c: [c]), r"config\.json must hold a JSON object, got list"),
        (lambda f: _config(f, lambda c: c.update(combiner_hidden_dim="abc")), r"config\.json: ScotConfig\.combiner_hidden_dim must be an int"),
        (
            lambda f: _config(f, lambda c: c["encoder_config"]["text_config"].update(hidden_size="abc")),
            r"config\.json: ScotConfig\.encoder_config\.text_config: .*'hidden_size'",
        ),
        (
            lambda f: _config(f, lambda c: c["encoder_config"]["vision_config"].update(num_hidden_layers=10**9)),
            r"config\.json: encoder_config\.vision_config\.num_hidden_layers is 1000000000, but the weights file holds only",
        ),
        (lambda f: (f / "model.safetensors").write_bytes(b""), r"model\.safetensors is not a readable safetensors file"),
        (
            lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:4000]),
            r"model\.safetensors is not a readable safetensors file",
        ),
        (lambda f: (f / "model.safetensors").unlink(), r"has no model\.safetensors"),
        (lambda f: _weights(f, lambda t: t.pop("combiner.fusion.0.weight")), r"missing tensors \['combiner\.fusion\.0\.weight'\]"),
        (lambda f: _weights(f, lambda t: t.update(extra=torch.zeros(2))), r"unexpected tensors \['extra'\]"),
        (
            lambda f: _weights(f, lambda t: t.update({"combiner.fusion.0.weight": torch.zeros(3, 3)})),
            r"model\.safetensors: tensor 'combiner\.fusion\.0\.weight' has shape \[3, 3\], the saved config describes \[32, 64\]",
        ),
        (
            lambda f: _weights(f, lambda t: t["combiner.modality_gate.3.bias"].fill_(torch.nan)),
            r"model\.safetensors: tensor 'combiner\.modality_gate\.3\.bias' holds NaN or infinite values",
        ),
        (lambda f: (f / "processor_config.json").write_text("[1]"), r"its processor files .* cannot be loaded"),
    ],
)
def test_scot_embed_names_the_damaged_file_in_one_line(saved_models, tmp_path, capsys, damage, message):
    folder = tmp_path / "model"
    shutil.copytree(saved_models["full"], folder)
    damage(folder)
    (tmp_path / "texts.txt").write_text("make it red\n")
    argv = ["embed", "--model", str(folder), "--texts", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "o.st")]
    assert main(argv) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scot embed: error:")]
    assert len(error) == 1 and str(folder) in error[0]
    assert re.search(message, error[0]), error[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "--model", "MODEL", "--world-seed", "0", "--test-queries", "1000000000", "--output", "OUT"],
        ["export-world", "--test-queries", "1000000000", "--output", "OUT"],
        ["eval", "--model", "MODEL", "--benchmark", "world", "--test-queries", "0"],
        ["quickstart", "--test-queries", "1000000000", "--output", "OUT"],
    ],
)
def test_world_size_is_bounded_before_any_work(saved_models, tmp_path, capsys, argv):
    argv = [{"MODEL": str(saved_models["full"]), "OUT": str(tmp_path / "out")}.get(item, item) for item in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: --test-queries must be between 1 and {MAX_QUERIES}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_quickstart_refuses_zero_epochs(tmp_path, capsys):
    assert main(["quickstart", "--epochs", "0", "--output", str(tmp_path / "out")]) == 2
    assert "error: --epochs must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
