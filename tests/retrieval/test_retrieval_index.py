import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling_scot.retrieval import FaissNotInstalledError, GalleryIndex, exact_search, faiss_available
from modeling_scot.retrieval import index as index_module

needs_faiss = pytest.mark.skipif(not faiss_available(), reason='faiss is not installed (pip install "modeling-scot[faiss]")')


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def structured(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Unit vectors around a shared low-rank signal: neighbours stand out, as in real embeddings."""
    basis = torch.randn(8, dim, generator=torch.Generator().manual_seed(-1))
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, 8, generator=generator) @ basis + 0.3 * torch.randn(rows, dim, generator=generator), dim=-1)


def ids(count: int) -> list[str]:
    return [f"img-{i}" for i in range(count)]


@pytest.mark.parametrize("max_scores", [1, 1000, 2**24])
def test_exact_search_matches_numpy_argsort(max_scores):
    queries, gallery = unit(7, 16, 0), unit(300, 16, 1)
    scores, indices = exact_search(queries, gallery, 10, max_scores_per_chunk=max_scores)
    brute = (queries @ gallery.T).numpy()
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    assert indices.tolist() == expected.tolist()
    assert np.allclose(scores.numpy(), np.take_along_axis(brute, expected, axis=1))


def test_exact_search_breaks_ties_by_lower_index():
    gallery = torch.tensor([[1.0], [3.0], [3.0], [2.0], [3.0], [3.0], [0.0]])
    query = torch.ones(1, 1)
    assert exact_search(query, gallery, 3)[1].tolist() == [[1, 2, 4]]
    assert exact_search(query, gallery, 5)[1].tolist() == [[1, 2, 4, 5, 3]]
    assert exact_search(torch.ones(1, 4), torch.ones(1000, 4), 4)[1].tolist() == [[0, 1, 2, 3]]


def test_exact_search_exclusion():
    queries, gallery = unit(3, 8, 2), unit(20, 8, 3)
    best = exact_search(queries, gallery, 1)[1][:, 0].tolist()
    scores, indices = exact_search(queries, gallery, 5, exclude=[[best[0]], [], [best[2], 0]])
    assert best[0] not in indices[0].tolist() and best[1] == indices[1, 0]
    assert not {best[2], 0} & set(indices[2].tolist())
    scores, indices = exact_search(queries[:1], gallery[:3], 3, exclude=[[0, 1]])
    assert indices[0, 1:].tolist() == [-1, -1] and torch.isinf(scores[0, 1:]).all() and indices[0, 0] == 2


def test_exact_search_rejects_bad_shapes_and_k():
    with pytest.raises(ValueError, match="must be"):
        exact_search(unit(2, 8, 0), unit(5, 4, 0), 2)
    with pytest.raises(ValueError, match="k must be between 1 and the gallery size 5"):
        exact_search(unit(2, 8, 0), unit(5, 8, 0), 6)


def test_exact_index_save_load_round_trip(tmp_path):
    gallery = unit(50, 16, 4)
    index = GalleryIndex.build(gallery, ids(50), "exact", model_fingerprint="abc")
    assert (len(index), index.dim, index.kind) == (50, 16, "exact")
    scores, found = index.search(gallery[:4], 5, exclude=[["img-0"], [], [], []])
    assert found[0][0] != "img-0" and [row[0] for row in found[1:]] == ["img-1", "img-2", "img-3"]
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["gallery.parquet", "index.json"]
    config = json.loads((tmp_path / "index" / "index.json").read_text())
    assert config["params"] == {} and config["kind"] == "exact" and config["count"] == 50
    assert config["dim"] == 16 and config["metric"] == "inner_product" and config["model_fingerprint"] == "abc"
    loaded = GalleryIndex.load(tmp_path / "index")
    assert loaded.model_fingerprint == "abc" and loaded.ids == ids(50)
    loaded_scores, loaded_found = loaded.search(gallery[:4], 5, exclude=[["img-0"], [], [], []])
    assert loaded_found == found and torch.equal(loaded_scores, scores)


def test_saved_gallery_is_a_datasets_parquet_dataset(tmp_path):
    from datasets import load_dataset

    GalleryIndex.build(unit(6, 4, 5), ids(6), "exact").save(tmp_path)
    dataset = load_dataset("parquet", data_files=str(tmp_path / "gallery.parquet"), split="train", cache_dir=str(tmp_path / "hf"))
    assert dataset.features["id"].dtype == "string" and dataset.features["embedding"].feature.dtype == "float32"
    assert dataset[2]["id"] == "img-2" and len(dataset[2]["embedding"]) == 4


def test_index_validation_errors():
    gallery = unit(20, 8, 6)
    index = GalleryIndex.build(gallery, ids(20), "exact")
    with pytest.raises(ValueError, match="query embeddings have 4 features but the index holds 8-dimensional"):
        index.search(unit(1, 4, 0), 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(torch.full((1, 8), float("nan")), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(gallery[:1], 0)
    with pytest.raises(ValueError, match="no such id"):
        index.search(gallery[:1], 3, exclude=[["nope"]])
    assert index.search(gallery[:1], 1000)[0].shape == (1, 20)  # k is clamped to the gallery size
    with pytest.raises(ValueError, match="empty"):
        GalleryIndex.build(torch.empty(0, 8), [], "exact")
    bad = gallery.clone()
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite values in 1 row"):
        GalleryIndex.build(bad, ids(20), "exact")
    with pytest.raises(ValueError, match="repeated: 'img-1'"):
        GalleryIndex.build(gallery[:3], ["img-0", "img-1", "img-1"], "exact")
    with pytest.raises(ValueError, match="got 2 ids for 20 embeddings"):
        GalleryIndex.build(gallery, ids(2), "exact")
    with pytest.raises(ValueError, match="unknown index kind 'annoy'"):
        GalleryIndex.build(gallery, ids(20), "annoy")


def test_load_rejects_a_folder_that_is_not_an_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a gallery index: it has no index.json"):
        GalleryIndex.load(tmp_path)


def test_approximate_kinds_without_faiss_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert not faiss_available()
    with pytest.raises(FaissNotInstalledError, match=r'pip install "modeling-scot\[faiss\]"'):
        GalleryIndex.build(unit(100, 8, 0), ids(100), "hnsw")
    monkeypatch.setattr(index_module, "AUTO_APPROXIMATE_ABOVE", 50)
    assert GalleryIndex.build(unit(100, 8, 0), ids(100), "auto").kind == "exact"


@needs_faiss
def test_auto_picks_ivf_above_the_threshold(monkeypatch):
    monkeypatch.setattr(index_module, "AUTO_APPROXIMATE_ABOVE", 500)
    assert GalleryIndex.build(unit(400, 8, 0), ids(400)).kind == "exact"
    assert GalleryIndex.build(structured(1000, 8, 0), ids(1000)).kind == "ivf"


@needs_faiss
def test_faiss_flat_equals_torch_exact(tmp_path):
    gallery, queries = unit(2000, 32, 7), unit(25, 32, 8)
    exact_scores, exact_ids = GalleryIndex.build(gallery, ids(2000), "exact").search(queries, 10)
    flat = GalleryIndex.build(gallery, ids(2000), "flat")
    flat.save(tmp_path)
    flat_scores, flat_ids = GalleryIndex.load(tmp_path).search(queries, 10)
    assert flat_ids == exact_ids
    assert torch.allclose(flat_scores, exact_scores, atol=1e-5)


@needs_faiss
@pytest.mark.parametrize("kind, min_recall", [("ivf", 0.9), ("hnsw", 0.9), ("ivfpq", 0.5)])
def test_approximate_recall_and_round_trip(tmp_path, kind, min_recall):
    gallery, queries = structured(4000, 32, 9), structured(50, 32, 10)
    _, truth = GalleryIndex.build(gallery, ids(4000), "exact").search(queries, 10)
    index = GalleryIndex.build(gallery, ids(4000), kind)
    scores, found = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= min_recall, f"{kind} recall@10 {recall:.3f}"
    index.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"gallery.parquet", "index.json", "index.faiss"}
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.kind == kind and loaded.params == index.params
    loaded_scores, loaded_found = loaded.search(queries, 10)
    assert loaded_found == found and torch.allclose(loaded_scores, scores)
    loaded.save(tmp_path / "copy")
    assert GalleryIndex.load(tmp_path / "copy").search(queries, 10)[1] == found


@needs_faiss
def test_faiss_exclusion_and_param_errors():
    gallery = structured(500, 16, 11)
    index = GalleryIndex.build(gallery, ids(500), "hnsw")
    _, found = index.search(gallery[:2], 3, exclude=[["img-0"], ["img-1", "img-7"]])
    assert "img-0" not in found[0] and not {"img-1", "img-7"} & set(found[1]) and all(len(row) == 3 for row in found)
    with pytest.raises(ValueError, match=r"unknown parameters \['nprobe'\] for index kind 'hnsw'"):
        GalleryIndex.build(gallery, ids(500), "hnsw", params={"nprobe": 4})
    with pytest.raises(ValueError, match="pq_m=5 must divide the embedding dimension 16"):
        GalleryIndex.build(gallery, ids(500), "ivfpq", params={"pq_m": 5})
