"""A gallery larger than memory: written chunk by chunk, indexed batch by batch from its parquet file."""

import tracemalloc

import pytest
import torch
import torch.nn.functional as F

from modeling_scot.retrieval import GalleryIndex, faiss_available
from modeling_scot.retrieval import store
from modeling_scot.retrieval.store import GalleryWriter, iter_embeddings, read_embeddings

needs_faiss = pytest.mark.skipif(not faiss_available(), reason='faiss is not installed (pip install "modeling-scot[faiss]")')


def clustered(rows: int, dim: int, seed: int, vectors: int = 0) -> torch.Tensor:
    """Unit vectors around a shared low-rank signal, (rows, dim) or (rows, vectors, dim)."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, dim, generator=generator)
    shape = (rows, vectors, 8) if vectors else (rows, 8)
    noise_shape = (*shape[:-1], dim)
    return F.normalize(torch.randn(shape, generator=generator) @ basis + 0.3 * torch.randn(noise_shape, generator=generator), dim=-1)


def written(path, embeddings: torch.Tensor, batch: int) -> list[str]:
    ids = [f"img-{row}" for row in range(len(embeddings))]
    writer = GalleryWriter(path)
    for start in range(0, len(ids), batch):
        writer.write(ids[start : start + batch], embeddings[start : start + batch])
    assert not path.exists()  # the file appears only once it is complete
    writer.close()
    return ids


def test_a_gallery_written_in_batches_reads_back_whole_and_in_batches(tmp_path):
    embeddings = clustered(250, 16, 0, vectors=3)
    ids = written(tmp_path / "gallery.parquet", embeddings, batch=64)
    read_ids, read = read_embeddings(tmp_path / "gallery.parquet")
    assert read_ids == ids and torch.equal(read, embeddings)
    batches = list(iter_embeddings(tmp_path / "gallery.parquet", batch_rows=100))
    assert [first for first, _ in batches] == [0, 100, 200]
    assert torch.equal(torch.cat([torch.tensor(rows) for _, rows in batches]), embeddings)


def test_the_writer_refuses_rows_of_another_shape(tmp_path):
    writer = GalleryWriter(tmp_path / "gallery.parquet")
    writer.write(["a"], clustered(1, 16, 0))
    with pytest.raises(ValueError, match=r"rows of shape \(8,\) after rows of shape \(16,\)"):
        writer.write(["b"], clustered(1, 8, 0))


@needs_faiss
@pytest.mark.parametrize(("kind", "params", "vectors"), [
    ("ivfpq", {"nlist": 16, "pq_m": 16, "pq_bits": 4}, 0),
    ("ivf", {"nlist": 16, "nprobe": 4}, 0),
    ("ivfpq", {"nlist": 16, "pq_m": 16, "pq_bits": 4}, 4),
])  # fmt: skip
def test_an_index_built_from_the_file_equals_the_one_built_in_memory(tmp_path, kind, params, vectors):
    embeddings = clustered(3000, 64, 1, vectors)
    ids = written(tmp_path / "gallery.parquet", embeddings, batch=500)
    in_memory = GalleryIndex.build(embeddings, ids, kind, params=params)
    streamed = GalleryIndex.build_from_file(tmp_path / "gallery.parquet", kind, params=params)
    queries = clustered(20, 64, 2)
    streamed_scores, streamed_ids = streamed.search(queries, 10)
    memory_scores, memory_ids = in_memory.search(queries, 10)
    assert streamed_ids == memory_ids and torch.equal(streamed_scores, memory_scores)
    assert (streamed.kind, streamed.vectors, streamed.normalized) == (kind, max(vectors, 1), True)
    loaded = GalleryIndex.load(streamed.save(tmp_path / "index"))
    loaded_scores, loaded_ids = loaded.search(queries, 10)
    assert loaded_ids == memory_ids and torch.equal(loaded_scores, memory_scores)


@needs_faiss
def test_a_faiss_index_built_from_the_file_never_holds_the_gallery_in_memory(tmp_path, monkeypatch):
    rows, dim = 40_000, 128  # 20 MB of float32 embeddings
    ids = written(tmp_path / "gallery.parquet", clustered(rows, dim, 3), batch=4096)
    monkeypatch.setattr(store, "BATCH_ROWS", 2048)  # read 1 MB at a time
    matrix_bytes = rows * dim * 4
    tracemalloc.start()
    index = GalleryIndex.build_from_file(tmp_path / "gallery.parquet", "ivfpq", params={"nlist": 32, "pq_m": 32, "pq_bits": 4})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert index.ids == ids and index._embeddings is None
    assert peak < matrix_bytes / 4, f"peak {peak / 2**20:.1f} MiB of Python and numpy memory for a {matrix_bytes / 2**20:.0f} MiB gallery"


def test_exact_search_from_the_file_loads_the_matrix(tmp_path):
    embeddings = clustered(100, 16, 4)
    ids = written(tmp_path / "gallery.parquet", embeddings, batch=30)
    index = GalleryIndex.build_from_file(tmp_path / "gallery.parquet", "exact")
    assert index.search(embeddings[:3], 1)[1] == [[ids[0]], [ids[1]], [ids[2]]]


def test_a_damaged_row_fails_the_streamed_build_naming_file_and_id(tmp_path):
    embeddings = clustered(3000, 16, 5)
    embeddings[2500, 3] = float("nan")
    written(tmp_path / "gallery.parquet", embeddings, batch=1000)
    if not faiss_available():
        pytest.skip("faiss is not installed")
    with pytest.raises(ValueError, match=r"gallery\.parquet: the embeddings of 1 row\(s\) hold NaN .* 'img-2500'"):
        GalleryIndex.build_from_file(tmp_path / "gallery.parquet", "ivf", params={"nlist": 8, "nprobe": 2})
