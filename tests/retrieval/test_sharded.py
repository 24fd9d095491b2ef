"""Galleries embedded across processes: each process writes its own chunks, the main one merges them; the sharded
index equals the single-process one (a real two-process `accelerate launch` on the CPU)."""

import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from modeling_scot.cli import main
from modeling_scot.embedding_cache import encode_chunks
from modeling_scot.retrieval.store import read_embeddings


def test_each_shard_encodes_every_nth_chunk_only(tmp_path):
    encoded = []

    def encode(rows: range) -> torch.Tensor:
        encoded.append((rows.start, rows.stop))
        return torch.full((len(rows), 2), float(rows.start))

    encode_chunks(tmp_path, "images", 10, 3, encode, progress=False, shard=(1, 2))
    assert encoded == [(3, 6), (9, 10)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images-00001.safetensors", "images-00003.safetensors"]
    encode_chunks(tmp_path, "images", 10, 3, encode, progress=False, shard=(0, 2))
    assert encoded[2:] == [(0, 3), (6, 9)] and len(list(tmp_path.iterdir())) == 4


def test_a_two_process_index_equals_the_single_process_one(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path / "model")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for number in range(18):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(images / f"{number:02d}.png")
    common = ["index", "--model", str(tmp_path / "model"), "--images", str(images), "--chunk-size", "4",
              "--num-workers", "0", "--device", "cpu", "--dtype", "fp32"]
    assert main([*common, "--output", str(tmp_path / "single")]) == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "modeling_scot.cli", *common, "--output", str(tmp_path / "sharded")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("indexed 18 images") == 1  # printed by the main process only
    single_ids, single = read_embeddings(tmp_path / "single" / "gallery.parquet")
    sharded_ids, sharded = read_embeddings(tmp_path / "sharded" / "gallery.parquet")
    assert sharded_ids == single_ids and torch.equal(sharded, single)
    assert not (tmp_path / "sharded" / "embedding-cache").exists()
