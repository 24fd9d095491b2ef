"""Kill `scot train` and `scot index` with SIGKILL at random moments, resume, and compare with uninterrupted runs.

    python bench/reliability_interruptions.py --kills 8 --output interruptions.json

Training uses the shipped world CLIP and a small rule-written world triplet set, with a checkpoint every step so
that kills land during checkpoint saves too; the index is the world benchmark gallery of a given seed. A run
"survives" when resuming after every kill ends with artefacts identical to the uninterrupted run's (bit-identical
weights; the same gallery ids and embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling_scot import ScotModel
from modeling_scot.quickstart import QuickstartSettings, triplet_dataset
from modeling_scot.world import clip_path

CLI = "import sys; from modeling_scot.cli import main; sys.exit(main(sys.argv[1:]))"
REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str]) -> None:
    subprocess.run([sys.executable, "-c", CLI, *argv], check=True, env=_env(), capture_output=True)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _kill_at(argv: list[str], delay: float) -> bool:
    """Run the command and SIGKILL it after `delay` seconds; False when it finished first."""
    process = subprocess.Popen([sys.executable, "-c", CLI, *argv], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _partial_names(folder: Path) -> list[str]:
    """Files or folders under a final name that a finished run would not hold (temporary or staging names)."""
    return [str(p) for p in folder.rglob("*") if ".staging-" in p.name or ".replaced-" in p.name or p.suffix == ".tmp"]


def _survive(argv: list[str], output: Path, same, kills: int, full_run: float, rng: random.Random) -> dict:
    landed = 0
    for _ in range(kills):
        landed += _kill_at(argv, rng.uniform(0.1, 1.0) * full_run)
    _run(argv)
    return {"kills": kills, "kills_landed": landed, "identical": bool(same(output)), "leftovers": _partial_names(output)}


def _weights_equal(first: Path, second: Path) -> bool:
    a, b = load_file(str(first / "model" / "model.safetensors")), load_file(str(second / "model" / "model.safetensors"))
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def _gallery_equal(first: Path, second: Path) -> bool:
    import pyarrow.parquet as pq

    a, b = pq.read_table(first / "gallery.parquet"), pq.read_table(second / "gallery.parquet")
    return a.equals(b)


def train_interruptions(work: Path, kills: int, rng: random.Random) -> dict:
    data = triplet_dataset(QuickstartSettings(num_scenes=60, edits_per_scene=4), work / "triplets")
    dataset = work / "triplets" / "data"
    assert len(data) == 240

    def argv(output: Path) -> list[str]:
        return ["train", "--encoder", clip_path(), "--dataset", str(dataset), "--output", str(output),
                "--batch-size", "16", "--num_train_epochs", "3", "--save_strategy", "steps", "--save_steps", "1",
                "--save_total_limit", "2", "--seed", "5", "--resume", "--device", "cpu"]

    reference = work / "train-reference"
    started = time.monotonic()
    _run(argv(reference))
    full_run = time.monotonic() - started
    interrupted = work / "train-interrupted"
    return _survive(argv(interrupted), interrupted, lambda out: _weights_equal(reference, out), kills, full_run, rng)


def index_interruptions(work: Path, kills: int, rng: random.Random) -> dict:
    model = work / "index-model"
    torch.manual_seed(0)
    ScotModel.from_encoder(clip_path()).save_pretrained(model)

    def argv(output: Path) -> list[str]:
        return ["index", "--model", str(model), "--world-seed", "3", "--test-queries", "400", "--output", str(output),
                "--batch-size", "32", "--device", "cpu"]

    reference = work / "index-reference"
    started = time.monotonic()
    _run(argv(reference))
    full_run = time.monotonic() - started
    interrupted = work / "index-interrupted"
    return _survive(argv(interrupted), interrupted, lambda out: _gallery_equal(reference, out), kills, full_run, rng)


def run(kills: int = 8, seed: int = 0) -> dict:
    """Kill-and-resume counts for `scot train` and `scot index`."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        return {"scot train": train_interruptions(work, kills, rng), "scot index": index_interruptions(work, kills, rng)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs per command before the final resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = run(args.kills, args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
