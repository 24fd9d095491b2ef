"""Loading runs no code and unpickles nothing a user supplies: weights only through safetensors, and
`trust_remote_code` only for the package's own saved folders when the package is not installed."""

import ast
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoProcessor

from modeling_scot import ScotModel
from modeling_scot.runtime import load_model

PACKAGE = Path(__file__).resolve().parents[2] / "modeling_scot"
PLANTED = "import pathlib; pathlib.Path({sentinel!r}).touch()\n"


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            yield node


def _call_name(node: ast.Call) -> str:
    return ast.unparse(node.func)


def test_no_module_unpickles():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"pickle", "dill", "cloudpickle", "joblib"}, path
        loads = [_call_name(node) for node in _calls(path) if _call_name(node) in ("torch.load", "np.load", "numpy.load")]
        assert not loads, f"{path} calls {loads}"


def test_trust_remote_code_is_passed_only_in_remote_mode_for_the_models_own_folder():
    passing = []
    for path in PACKAGE.rglob("*.py"):
        for node in _calls(path):
            for keyword in node.keywords:
                if keyword.arg == "trust_remote_code" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    passing.append((path.name, _call_name(node), ast.unparse(keyword.value)))
    assert passing == [("modeling_scot.py", "AutoProcessor.from_pretrained", "True")]


@pytest.fixture
def planted_folder(scot_model, tmp_path):
    """A saved model whose code files were replaced by code that leaves a sentinel file when it runs."""
    folder = tmp_path / "model"
    scot_model.save_pretrained(folder)
    sentinel = tmp_path / "code-ran"
    for name in ("modeling_scot.py", "configuration_scot.py", "processing_scot.py", "encoders.py"):
        (folder / name).write_text(PLANTED.format(sentinel=str(sentinel)))
    return folder, sentinel


def test_loading_through_the_package_runs_no_code_from_the_folder(planted_folder):
    folder, sentinel = planted_folder
    for load in (ScotModel.from_pretrained, AutoModel.from_pretrained, AutoProcessor.from_pretrained,
                 lambda source: load_model(str(source), "cpu")):
        loaded = load(folder)
        assert loaded is not None
    assert not sentinel.exists()


def test_pickled_weights_are_never_loaded(scot_model, tmp_path):
    folder = tmp_path / "model"
    scot_model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"planted": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises((ValueError, OSError)):
        ScotModel.from_pretrained(folder)
