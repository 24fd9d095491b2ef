import json
import logging
import shutil
import sys

import pytest
import torch
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from modeling_scot import encode_images
from modeling_scot.retrieval import DatasetImages, FaissNotInstalledError, Gallery, GalleryIndex, ImageFiles, WorldGallery, embed_gallery
from modeling_scot.cli import build_parser
from modeling_scot.cli.retrieval import cmd_index, cmd_search
from modeling_scot.world import scene_id

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30), (250, 250, 250), (15, 15, 15)]
NAMES = ["a.png", "b.jpg", "c.png", "nested/d.png", "nested/e.png", "nested/deeper/f.png"]


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "gallery"
    for name, colour in zip(NAMES, COLOURS):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24 + len(name), 20), colour).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


class CountingEncoder:
    """Wraps a model's image encoder: counts calls and can fail at a given call, like an interrupted run."""

    def __init__(self, model, fail_at: int | None = None):
        self.encode, self.calls, self.fail_at = model.get_image_features, 0, fail_at

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.encode(*args, **kwargs)


def test_folder_gallery_matches_encode_images_and_is_cached(scot_model, image_folder, tmp_path, monkeypatch):
    source = ImageFiles.from_folder(image_folder)
    assert source.ids == sorted(NAMES)
    gallery = embed_gallery(scot_model, source, tmp_path / "cache", batch_size=4, chunk_size=4, progress=False)
    expected = encode_images(scot_model, [str(image_folder / name) for name in sorted(NAMES)], progress=False)
    assert gallery.ids == sorted(NAMES) and torch.allclose(gallery.embeddings, expected, atol=1e-5)
    (folder,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["gallery.json", "gallery.parquet"]
    manifest = json.loads((folder / "gallery.json").read_text())
    assert manifest["count"] == 6 and manifest["dim"] == 16 and manifest["normalized"] and manifest["model_fingerprint"]

    counter = CountingEncoder(scot_model)
    monkeypatch.setattr(scot_model, "get_image_features", counter)
    again = embed_gallery(scot_model, source, tmp_path / "cache", progress=False)
    assert counter.calls == 0 and again.ids == gallery.ids and torch.equal(again.embeddings, gallery.embeddings)


def test_interrupted_run_resumes_at_the_first_unfinished_chunk(scot_model, image_folder, tmp_path, monkeypatch):
    source = ImageFiles.from_folder(image_folder)
    reference = embed_gallery(scot_model, source, tmp_path / "fresh", batch_size=1, chunk_size=2, progress=False)

    monkeypatch.setattr(scot_model, "get_image_features", CountingEncoder(scot_model, fail_at=4))
    with pytest.raises(KeyboardInterrupt):
        embed_gallery(scot_model, source, tmp_path / "cache", batch_size=1, chunk_size=2, progress=False)
    (folder,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == ["images-00000.safetensors"]

    counter = CountingEncoder(scot_model)
    monkeypatch.setattr(scot_model, "get_image_features", counter)
    resumed = embed_gallery(scot_model, source, tmp_path / "cache", batch_size=1, chunk_size=2, progress=False)
    assert counter.calls == 4  # chunks 1 and 2 only
    assert resumed.ids == reference.ids and torch.allclose(resumed.embeddings, reference.embeddings, atol=1e-6)
    assert not (folder / "chunks").exists()


def test_missing_files_fail_before_model_work(scot_model, image_folder, tmp_path, monkeypatch):
    counter = CountingEncoder(scot_model)
    monkeypatch.setattr(scot_model, "get_image_features", counter)
    paths = [image_folder / "a.png", tmp_path / "gone-1.png", tmp_path / "gone-2.png"]
    with pytest.raises(FileNotFoundError, match="2 gallery image file.s. do not exist: .*gone-1.png.*gone-2.png"):
        embed_gallery(scot_model, ImageFiles(paths), tmp_path / "cache", progress=False)
    assert counter.calls == 0


def test_undecodable_image_fails_naming_it_or_is_skipped(scot_model, image_folder, tmp_path, caplog):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    source = ImageFiles.from_folder(image_folder)
    with pytest.raises(ValueError, match="1 gallery image.s. cannot be decoded: .*broken.png.*skip_broken=True"):
        embed_gallery(scot_model, source, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)
    with caplog.at_level(logging.WARNING):
        gallery = embed_gallery(scot_model, source, tmp_path / "cache", batch_size=2, chunk_size=2, skip_broken=True, progress=False)
    assert gallery.skipped == ["broken.png"] and gallery.ids == sorted(NAMES)
    assert "left out 1 gallery image(s) that cannot be decoded: 'broken.png'" in caplog.text
    with pytest.raises(ValueError, match="in an earlier run with skip_broken=True: 'broken.png'"):
        embed_gallery(scot_model, source, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)


def test_worker_processes_give_the_same_embeddings(scot_model, image_folder, tmp_path):
    source = ImageFiles.from_folder(image_folder)
    inline = embed_gallery(scot_model, source, tmp_path / "a", batch_size=2, chunk_size=3, progress=False)
    workers = embed_gallery(scot_model, source, tmp_path / "b", batch_size=2, chunk_size=3, num_workers=2, progress=False)
    assert workers.ids == inline.ids and torch.allclose(workers.embeddings, inline.embeddings, atol=1e-6)


def test_dataset_column_gallery(scot_model, tmp_path):
    images = [Image.new("RGB", (30, 30), colour) for colour in COLOURS[:4]]
    features = Features({"name": Value("string"), "picture": ImageFeature()})
    dataset = Dataset.from_dict({"name": ["w", "x", "y", "z"], "picture": images}, features=features)
    gallery = embed_gallery(scot_model, DatasetImages(dataset, "picture", "name"), tmp_path / "cache", progress=False)
    assert gallery.ids == ["w", "x", "y", "z"]
    assert torch.allclose(gallery.embeddings, encode_images(scot_model, images, progress=False), atol=1e-5)
    assert DatasetImages(dataset, "picture").ids == ["row-0", "row-1", "row-2", "row-3"]
    with pytest.raises(ValueError, match="no column 'image'"):
        DatasetImages(dataset)


def test_world_gallery_and_gallery_round_trip(scot_model, tmp_path):
    source = WorldGallery(0, num_queries=10)
    assert source.ids == [scene_id(scene) for scene in source.scenes] and source.image(0).size == (64, 64)
    gallery = embed_gallery(scot_model, source, tmp_path / "cache", batch_size=16, progress=False)
    assert len(gallery) == len(source.ids) and gallery.dim == 16
    loaded = Gallery.load(gallery.save(tmp_path / "saved"))
    assert loaded.ids == gallery.ids and torch.equal(loaded.embeddings, gallery.embeddings)
    assert loaded.model_fingerprint == gallery.model_fingerprint


# ----- scot index / scot search ------------------------------------------------------------------------


@pytest.fixture
def parser():
    return build_parser()


@pytest.fixture
def saved_model(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_index_and_search_end_to_end(parser, saved_model, image_folder, tmp_path, capsys):
    output = tmp_path / "index"
    args = parser.parse_args(["index", "--model", saved_model, "--images", str(image_folder), "--output", str(output), "--num-workers", "0"])
    assert cmd_index(args) == 0
    assert "indexed 6 images (exact, 16-d embeddings)" in capsys.readouterr().out
    assert sorted(p.name for p in output.iterdir()) == ["gallery.parquet", "index.json"]

    search = ["search", "--model", saved_model, "--index", str(output), "--image", str(image_folder / "c.png"), "--text", "make it red"]
    assert cmd_search(parser.parse_args([*search, "-k", "3", "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["rank"] for row in report["results"]] == [1, 2, 3] and 0 < report["modality_weight"] < 1
    assert {row["id"] for row in report["results"]} <= set(NAMES)

    assert cmd_search(parser.parse_args([*search, "--method", "image", "--json", "-k", "20"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"][0]["id"] == "c.png" and report["results"][0]["score"] == pytest.approx(1, abs=1e-4)
    assert len(report["results"]) == 6 and report["modality_weight"] is None

    assert cmd_search(parser.parse_args([*search, "--method", "image", "--exclude", "c.png"])) == 0
    table = capsys.readouterr().out
    assert "rank" in table and "c.png" not in table.split("\n", 1)[1]

    assert cmd_search(parser.parse_args([*search, "--method", "slerp", "--slerp-alpha", "0.3", "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == {"alpha": 0.3}
    assert cmd_search(parser.parse_args([*search, "--method", "slerp"])) == 0
    assert "method slerp, alpha 0.8" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"--slerp-alpha must be in \[0, 1\], got 1.2"):
        cmd_search(parser.parse_args([*search, "--method", "slerp", "--slerp-alpha", "1.2"]))
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ValueError, match="--image .*folder.png' is not a regular file"):
        cmd_search(parser.parse_args([*search, "--image", str(tmp_path / "folder.png")]))


def test_search_refuses_an_index_from_another_encoder(parser, saved_model, scot_model, image_folder, tmp_path):
    output = tmp_path / "index"
    cmd_index(parser.parse_args(["index", "--model", saved_model, "--images", str(image_folder), "--output", str(output)]))
    with torch.no_grad():
        next(scot_model.encoder.parameters()).add_(0.01)
    scot_model.save_pretrained(tmp_path / "other")
    args = parser.parse_args(
        ["search", "--model", str(tmp_path / "other"), "--index", str(output), "--image", str(image_folder / "a.png"), "--text", "x"]
    )
    with pytest.raises(ValueError, match="was built by a different encoder"):
        cmd_search(args)


def test_index_the_world_gallery(parser, saved_model, tmp_path, capsys):
    output = tmp_path / "world"
    args = parser.parse_args(["index", "--model", saved_model, "--world-seed", "0", "--test-queries", "10", "--output", str(output)])
    assert cmd_index(args) == 0
    assert GalleryIndex.load(output).ids == WorldGallery(0, num_queries=10).ids


def test_index_asks_for_faiss_before_model_work(parser, image_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    args = parser.parse_args(["index", "--model", "/no/such/model", "--images", str(image_folder), "--output", str(tmp_path / "i"), "--kind", "ivf"])
    with pytest.raises(FaissNotInstalledError, match="modeling-scot.faiss."):
        cmd_index(args)


def test_chunks_survive_another_run_removing_the_shared_cache_folder(tmp_path):
    from modeling_scot.embedding_cache import chunked_encode

    folder = tmp_path / "chunks"
    calls = []

    def encode(rows):
        calls.append(rows)
        shutil.rmtree(folder, ignore_errors=True)  # as a concurrent run does when it finishes first
        return torch.full((len(rows), 3), float(rows.start))

    embeds = chunked_encode(folder, "images", 5, 2, encode, progress=False)
    assert embeds[:, 0].tolist() == [0, 0, 2, 2, 4] and len(calls) == 3
