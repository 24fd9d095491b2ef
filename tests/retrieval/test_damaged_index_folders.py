"""Property tests: saved index folders (index.json, gallery.parquet, index.faiss) and saved galleries
(gallery.json), damaged at random, load and search or fail with a ValueError naming the file; never another
error, and never a NaN score."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.evaluation.mutations import mutate_bytes, mutate_gallery_table, mutate_json_file

from modeling_scot.retrieval import Gallery, GalleryIndex, faiss_available
from modeling_scot.retrieval.store import write_embeddings

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FAISS = ["flat", "hnsw", "ivf"] if faiss_available() else []
KINDS = ["exact", *FAISS, "exact-multi", *(["flat-multi"] if FAISS else [])]
"""Index kinds; `-multi`: a gallery of VECTORS vectors per image (as BLIP-2's query tokens)."""
COUNT, DIM, VECTORS = 120, 8, 3


def drawer(data: st.DataObject):
    return lambda options: data.draw(st.sampled_from(list(options)))


def embeddings(count: int = COUNT, vectors: int = 0) -> torch.Tensor:
    shape = (count, vectors, DIM) if vectors else (count, DIM)
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(0)), dim=-1)


def damage(folder: Path, data: st.DataObject) -> Path:
    """Damage one file of `folder` in one way; returns the file."""
    choose = drawer(data)
    file = data.draw(st.sampled_from(sorted(path for path in folder.iterdir() if path.is_file())))
    if file.suffix == ".json":
        mutate_json_file(file, choose)
    elif file.suffix == ".parquet" and data.draw(st.booleans()):
        mutate_gallery_table(file, choose)
    else:
        file.write_bytes(mutate_bytes(file.read_bytes(), choose))
    return file


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indexes")
    folders = {}
    ids = [f"img-{i}" for i in range(COUNT)]
    for kind in KINDS:
        gallery = embeddings(vectors=VECTORS if kind.endswith("-multi") else 0)
        index = GalleryIndex.build(gallery, ids, kind.removesuffix("-multi"), model_fingerprint="f" * 32)
        folders[kind] = index.save(root / kind)
    folders["gallery"] = Gallery(ids, embeddings(), "f" * 32).save(root / "gallery")
    folders["gallery-multi"] = Gallery(ids, embeddings(vectors=VECTORS), "f" * 32).save(root / "gallery-multi")
    return folders


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_damaged_index_folders_search_or_name_the_file(saved, tmp_path_factory, kind, data):
    folder = tmp_path_factory.getbasetemp() / "damaged-index"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(saved[kind], folder)
    damage(folder, data)
    try:
        index = GalleryIndex.load(folder)
    except (ValueError, FileNotFoundError) as error:
        assert str(folder) in str(error), str(error)
        return
    scores, ids = index.search(embeddings(3), k=5, exclude=[[], [index.ids[0]], []])
    assert not torch.isnan(scores).any()
    assert all(item is None or item in index.ids for row in ids for item in row)


@pytest.mark.parametrize("name", ["gallery", "gallery-multi"])
@PROPERTY
@given(data=st.data())
def test_damaged_saved_galleries_load_or_name_the_file(saved, tmp_path_factory, name, data):
    folder = tmp_path_factory.getbasetemp() / "damaged-gallery"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(saved[name], folder)
    damage(folder, data)
    try:
        gallery = Gallery.load(folder)
    except (ValueError, FileNotFoundError) as error:
        assert str(folder) in str(error), str(error)
    else:
        assert torch.isfinite(gallery.embeddings).all() and len(set(gallery.ids)) == len(gallery)


def test_nan_rows_are_refused_naming_the_file_and_the_ids(tmp_path):
    index = GalleryIndex.build(embeddings(), [f"img-{i}" for i in range(COUNT)], "exact").save(tmp_path / "index")
    values = embeddings()
    values[[4, 9]] = torch.nan
    write_embeddings(index / "gallery.parquet", [f"img-{i}" for i in range(COUNT)], values)
    expected = r"gallery\.parquet: the embeddings of 2 row\(s\) hold NaN .* 'img-4', 'img-9' \(rows 4, 9\)"
    with pytest.raises(ValueError, match=expected):
        GalleryIndex.load(index)


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_a_faiss_file_of_another_kind_or_size_is_refused(tmp_path):
    names = [f"img-{i}" for i in range(COUNT)]
    flat = GalleryIndex.build(embeddings(), names, "flat").save(tmp_path / "flat")
    hnsw = GalleryIndex.build(embeddings(), names, "hnsw").save(tmp_path / "hnsw")
    small = GalleryIndex.build(embeddings(COUNT - 1), names[:-1], "flat").save(tmp_path / "small")
    shutil.copyfile(hnsw / "index.faiss", flat / "index.faiss")
    with pytest.raises(ValueError, match=r"flat/index\.faiss holds a IndexHNSWFlat .* not a 'flat' inner-product index"):
        GalleryIndex.load(flat)
    shutil.copyfile(small / "index.faiss", hnsw / "index.faiss")
    with pytest.raises(ValueError, match=r"hnsw/index\.faiss holds a IndexFlatIP"):
        GalleryIndex.load(hnsw)
    shutil.copyfile(small / "index.faiss", tmp_path / "flat" / "index.faiss")
    with pytest.raises(ValueError, match=rf"index\.faiss holds {COUNT - 1} vectors for {COUNT} gallery vectors"):
        GalleryIndex.load(flat)
