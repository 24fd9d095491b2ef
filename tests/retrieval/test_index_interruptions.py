"""`scot index` killed with SIGKILL while it embeds chunks and while it saves, then resumed, gives the
uninterrupted run's gallery; no half-written file is ever left under a final name."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from modeling_scot.retrieval import GalleryIndex
from modeling_scot.retrieval.index import CONFIG_FILE, EMBEDDINGS_FILE
from modeling_scot.retrieval.indexing import CACHE_FOLDER

CLI = "import sys; from modeling_scot.cli import main; sys.exit(main(sys.argv[1:]))"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
IMAGES = 48


@pytest.fixture
def index_inputs(scot_model, tmp_path):
    work = tmp_path / "inputs"
    work.mkdir()
    rng = random.Random(0)
    for number in range(IMAGES):
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (20 + number % 7, 18), colour).save(work / f"image-{number:02d}.png")
    scot_model.save_pretrained(tmp_path / "model")
    return work


def _command(inputs: Path, output: Path) -> list[str]:
    return [sys.executable, "-c", CLI, "index", "--model", str(inputs.parent / "model"), "--images", str(inputs),
            "--output", str(output), "--chunk-size", "4", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]  # fmt: skip


def _chunks(output: Path) -> int:
    return len(list((output / CACHE_FOLDER).glob("*/chunks/*.safetensors")))


def _kill_when(command: list[str], ready) -> bool:
    """Start `command`, SIGKILL it as soon as `ready()` holds; False when it finished first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    while process.poll() is None and not ready():
        time.sleep(0.001)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def _leftovers(output: Path) -> list[str]:
    return [p.name for p in output.rglob("*") if p.suffix == ".tmp" or ".staging-" in p.name]


def _assert_final_names_are_complete(output: Path) -> None:
    """Temporary files may stay after a kill; a final name holds a whole file, and index.json (written last)
    stands only beside an index that loads."""
    if (output / EMBEDDINGS_FILE).is_file():
        assert pq.read_table(output / EMBEDDINGS_FILE).num_rows == IMAGES
    if (output / CONFIG_FILE).is_file():
        assert len(GalleryIndex.load(output)) == IMAGES


def test_sigkill_while_embedding_and_saving_then_resume_gives_the_same_gallery(index_inputs, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_command(index_inputs, reference), check=True, capture_output=True, env=ENV)
    interrupted = tmp_path / "interrupted"
    command = _command(index_inputs, interrupted)
    rng = random.Random(3)
    killed = 0
    for _ in range(2):
        target = _chunks(interrupted) + rng.randint(1, 3)
        killed += _kill_when(command, lambda: _chunks(interrupted) >= target)  # noqa: B023
        _assert_final_names_are_complete(interrupted)
    saving = lambda: (interrupted / EMBEDDINGS_FILE).exists() or any(interrupted.glob("*.tmp"))  # noqa: E731
    killed += _kill_when(command, saving)
    _assert_final_names_are_complete(interrupted)
    assert killed >= 2
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    assert _leftovers(interrupted) == [] and _leftovers(reference) == []
    assert not (interrupted / CACHE_FOLDER).exists()
    assert pq.read_table(interrupted / EMBEDDINGS_FILE).equals(pq.read_table(reference / EMBEDDINGS_FILE))
    assert GalleryIndex.load(interrupted).ids == GalleryIndex.load(reference).ids
