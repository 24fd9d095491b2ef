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
from modeling_scot.retrieval import ImageFiles
from modeling_scot.retrieval.gallery import _EmbeddingStream
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


def test_a_share_reads_its_chunks_through_one_loader(scot_model, tmp_path, monkeypatch):
    paths = []
    for number in range(10):
        paths.append(tmp_path / f"{number}.png")
        Image.new("RGB", (12, 12), (20 * number, 0, 0)).save(paths[-1])
    settings = dict(batch_size=2, chunk_size=3, num_workers=0, autocast_dtype=None, skip_broken=False)
    source = ImageFiles(paths)
    whole = _EmbeddingStream(scot_model, source, scot_model.processor, **settings)(range(0, 10))
    share = _EmbeddingStream(scot_model, source, scot_model.processor, stride=2, **settings)
    starts = []
    loader = share._loader
    monkeypatch.setattr(share, "_loader", lambda start: starts.append(start) or loader(start))
    chunks = {rows: share(rows) for rows in (range(3, 6), range(9, 10))}  # process 1 of 2: chunks 1 and 3
    assert starts == [3]
    for rows, embeds in chunks.items():
        torch.testing.assert_close(embeds, whole[rows.start : rows.stop])
    share(range(0, 3))  # a chunk outside the expected order restarts the loader there
    assert starts == [3, 0]


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
