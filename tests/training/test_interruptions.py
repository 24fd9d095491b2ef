"""`scot train` killed with SIGKILL at random moments and resumed gives the uninterrupted run's model; checkpoints
hold no pickle; half-written checkpoints are skipped; `--seed` makes training reproducible."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from modeling_scot.checkpoints import PICKLED_STATES, checkpoint_problem, last_complete_checkpoint
from modeling_scot.cli import main

TRAIN_FLAGS = ["--batch-size", "2", "--num_train_epochs", "4", "--save_strategy", "steps", "--save_steps", "1",
               "--save_total_limit", "3", "--logging_steps", "1", "--seed", "3", "--combiner-only"]


@pytest.fixture(scope="module")
def triplet_folder(triplet_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("triplets") / "data"
    triplet_dataset.save_to_disk(str(folder))
    return folder


def _argv(encoder: str, dataset: Path, output: Path) -> list[str]:
    return ["train", "--encoder", encoder, "--dataset", str(dataset), "--output", str(output), *TRAIN_FLAGS]


def _weights(output: Path) -> dict:
    return load_file(str(output / "model" / "model.safetensors"))


def _assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].equal(second[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tiny_clip_dir, triplet_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("uninterrupted")
    assert main(_argv(tiny_clip_dir, triplet_folder, output)) == 0
    return output


def test_checkpoints_hold_no_pickle(uninterrupted):
    checkpoints = sorted((uninterrupted / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 3
    for folder in checkpoints:
        names = {path.name for path in folder.iterdir()}
        assert {"optimizer.safetensors", "optimizer.json", "scheduler.json", "rng_state.safetensors"} <= names
        assert not names & set(PICKLED_STATES)
        assert checkpoint_problem(folder) is None


def test_seed_makes_training_reproducible(uninterrupted, tiny_clip_dir, triplet_folder, tmp_path):
    assert main(_argv(tiny_clip_dir, triplet_folder, tmp_path)) == 0
    _assert_same_weights(_weights(uninterrupted), _weights(tmp_path))


def _kill_when(command: list[str], env: dict, ready, delay: float) -> bool:
    """Start `command`, wait until `ready()` holds, sleep `delay` seconds, then SIGKILL it; False if it ended first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while process.poll() is None and not ready():
        time.sleep(0.001)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def _last_step(output: Path) -> int:
    return max((int(path.name.split("-")[1]) for path in (output / "checkpoints").glob("checkpoint-*")), default=0)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_model(
    uninterrupted, tiny_clip_dir, triplet_folder, tmp_path
):
    """Kills land while checkpoints are written (one is saved every step) and while the final model is saved."""
    code = "import sys; from modeling_scot.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, *_argv(tiny_clip_dir, triplet_folder, tmp_path), "--resume"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(7)
    killed = 0
    for _ in range(2):
        steps = rng.randint(1, 6)
        before = _last_step(tmp_path)
        ready = lambda: _last_step(tmp_path) >= before + steps  # noqa: E731
        killed += _kill_when(command, env, ready, rng.uniform(0.0, 0.02))
        assert not (tmp_path / "model").exists()
    staging = lambda: any(tmp_path.glob(".model.staging-*/*"))  # noqa: E731
    killed += _kill_when(command, env, staging, 0.0)
    assert killed >= 2
    assert not (tmp_path / "model").exists() or (tmp_path / "model" / "config.json").is_file()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _assert_same_weights(_weights(uninterrupted), _weights(tmp_path))
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "scot"


@pytest.fixture
def resumable(uninterrupted, tmp_path):
    output = tmp_path / "run"
    subprocess.run(["cp", "-r", str(uninterrupted), str(output)], check=True)
    return output


def test_half_written_checkpoint_is_skipped(resumable, caplog):
    checkpoints = resumable / "checkpoints"
    last = last_complete_checkpoint(checkpoints)
    broken = checkpoints / "checkpoint-999"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    assert last_complete_checkpoint(checkpoints) == last
    assert "skipping half-written checkpoint" in caplog.text and "checkpoint-999" in caplog.text


class _Planted:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def test_a_planted_pickle_is_never_loaded(resumable, tiny_clip_dir, triplet_folder, tmp_path):
    sentinel = tmp_path / "pickle-ran"
    last = Path(last_complete_checkpoint(resumable / "checkpoints"))
    (last / "rng_state.pth").write_bytes(pickle.dumps(_Planted(sentinel)))
    argv = _argv(tiny_clip_dir, triplet_folder, resumable)
    argv[argv.index("4")] = "5"  # one more epoch, resumed from the last checkpoint
    assert main([*argv, "--resume"]) == 0
    assert not sentinel.exists()


def test_a_checkpoint_with_pickled_optimizer_state_is_refused(resumable, tiny_clip_dir, triplet_folder, capsys):
    last = Path(last_complete_checkpoint(resumable / "checkpoints"))
    (last / "optimizer.json").unlink()
    (last / "optimizer.pt").write_bytes(b"not loaded")
    assert main([*_argv(tiny_clip_dir, triplet_folder, resumable), "--resume"]) != 0
    error = capsys.readouterr().err
    assert "optimizer.pt" in error and "never loads" in error and str(last) in error


def test_trainer_state_is_written_last(uninterrupted):
    folder = Path(last_complete_checkpoint(uninterrupted / "checkpoints"))
    newest = max(folder.iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert newest.name == "trainer_state.json"
    assert json.loads(newest.read_text())["global_step"] > 0
