"""Optional faiss indexes on inner product: exact `flat` (IndexFlatIP) and approximate `ivf` (IVF-Flat),
`hnsw` (HNSW-Flat) and `ivfpq` (IVF-PQ, about 4 dimensions per byte, for memory)."""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

FAISS_KINDS = ("flat", "ivf", "hnsw", "ivfpq")
INSTALL_HINT = 'pip install "modeling-scot[faiss]"'
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "flat": (),
    "ivf": ("nlist", "nprobe"),
    "hnsw": ("m", "ef_construction", "ef_search"),
    "ivfpq": ("nlist", "nprobe", "pq_m", "pq_bits"),
}
MIN_POINTS_PER_CENTROID = 39
"""faiss k-means wants at least this many training points per centroid."""
MIN_NPROBE = 32
TRAINING_POINTS_PER_LIST = 64
"""IVF training uses at most this many points per inverted list (a fixed random sample)."""


class FaissNotInstalledError(ImportError, ValueError):
    """A faiss index kind was asked for but the faiss package is not installed."""


def faiss_available() -> bool:
    """Whether the optional faiss package can be imported."""
    return importlib.util.find_spec("faiss") is not None


def import_faiss(kind: str):
    """The faiss module; a FaissNotInstalledError naming the install command without it."""
    try:
        import faiss
    except ImportError as err:
        raise FaissNotInstalledError(
            f"index kind {kind!r} needs the faiss package, which is not installed: {INSTALL_HINT}"
        ) from err
    return faiss


def default_params(kind: str, count: int, dim: int) -> dict[str, int]:
    """Parameters sized from the gallery: nlist ~ 4 sqrt(N) lists probing 1/16 of them (at least 32),
    HNSW with M=32, IVF-PQ with one byte per 4 dimensions."""
    nlist = max(1, min(round(4 * math.sqrt(count)), count // MIN_POINTS_PER_CENTROID))
    nprobe = min(nlist, max(MIN_NPROBE, nlist // 16))
    if kind == "ivf":
        return {"nlist": nlist, "nprobe": nprobe}
    if kind == "hnsw":
        return {"m": 32, "ef_construction": 80, "ef_search": 128}
    if kind == "ivfpq":
        pq_m = max((m for m in range(1, dim // 4 + 1) if dim % m == 0), default=1)
        pq_bits = max(1, min(8, int(math.log2(max(count // MIN_POINTS_PER_CENTROID, 1)))))
        return {"nlist": nlist, "nprobe": nprobe, "pq_m": pq_m, "pq_bits": pq_bits}
    return {}


def resolve_params(kind: str, count: int, dim: int, overrides: dict[str, int] | None) -> dict[str, int]:
    """Defaults for `kind` updated with `overrides`, checked against the gallery size and dimension."""
    unknown = set(overrides or {}) - set(PARAM_NAMES[kind])
    if unknown:
        raise ValueError(
            f"unknown parameters {sorted(unknown)} for index kind {kind!r}; it takes {list(PARAM_NAMES[kind])}"
        )
    params = {**default_params(kind, count, dim), **(overrides or {})}
    for name, value in params.items():
        if type(value) is not int or value < 1:
            raise ValueError(f"index parameter {name} must be a positive int, got {value!r}")
    if "nlist" in params and params["nlist"] > count:
        raise ValueError(f"{kind} with nlist={params['nlist']} needs at least as many embeddings, got {count}")
    if "pq_m" in params and dim % params["pq_m"]:
        raise ValueError(f"pq_m={params['pq_m']} must divide the embedding dimension {dim}")
    if "pq_bits" in params and (params["pq_bits"] > 16 or 2 ** params["pq_bits"] > count):
        raise ValueError(
            f"ivfpq with pq_bits={params['pq_bits']} needs pq_bits <= 16 and at least {2 ** params['pq_bits']} "
            f"embeddings, got {count}: use a smaller pq_bits or kind 'exact'"
        )
    return params


def configure(index, kind: str, params: dict[str, int]) -> None:
    """Set the search-time parameters (nprobe, efSearch) on a built or loaded index."""
    if "nprobe" in params:
        index.nprobe = min(params["nprobe"], params["nlist"])
    if kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]


def training_rows(count: int, params: dict[str, int]) -> np.ndarray | None:
    """The sorted rows of `count` vectors that an IVF index of `params` trains on (a fixed random sample of at most
    `TRAINING_POINTS_PER_LIST` per list); None for kinds that need no training."""
    if "nlist" not in params:
        return None
    wanted = params["nlist"] * TRAINING_POINTS_PER_LIST
    if count <= wanted:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, wanted, replace=False))


def _empty_index(faiss, kind: str, dim: int, params: dict[str, int]):
    metric = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"], metric)
        index.hnsw.efConstruction = params["ef_construction"]
        return index
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"], metric)
    if kind == "ivfpq":
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, params["nlist"], params["pq_m"], params["pq_bits"], metric)
    raise ValueError(f"unknown faiss index kind {kind!r}; choose from {FAISS_KINDS}")


def build_faiss_index_streamed(
    kind: str,
    dim: int,
    count: int,
    batches: Callable[[], Iterable[np.ndarray]],
    params: dict[str, int],
):
    """Train (where needed) and fill a faiss index of `kind` with `count` vectors of `dim` floats that each call of
    `batches` yields in order, a batch at a time: one pass gathers the training sample (see `training_rows`), a
    second adds the vectors, so no more than the sample and one batch are ever in memory."""
    faiss = import_faiss(kind)
    index = _empty_index(faiss, kind, dim, params)
    sample_rows = training_rows(count, params)
    if not index.is_trained:
        sample, first = [], 0
        for batch in batches():
            wanted = sample_rows[(sample_rows >= first) & (sample_rows < first + len(batch))] - first
            sample.append(np.ascontiguousarray(batch[wanted], dtype=np.float32))
            first += len(batch)
        index.train(np.concatenate(sample))
        del sample
    for batch in batches():
        index.add(np.ascontiguousarray(batch, dtype=np.float32))
    if index.ntotal != count:
        raise ValueError(f"the {kind} index was given {index.ntotal} vectors, expected {count}")
    configure(index, kind, params)
    return index


def build_faiss_index(kind: str, embeddings: torch.Tensor, params: dict[str, int]):
    """Train (where needed) and fill a faiss index of `kind` with the (N, D) float32 embeddings."""
    vectors = embeddings.detach().to(device="cpu", dtype=torch.float32).numpy()
    return build_faiss_index_streamed(kind, vectors.shape[1], len(vectors), lambda: [vectors], params)


def faiss_search(index, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices), both (Q, k), best first; empty slots have index -1 and score -inf."""
    vectors = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
    scores, indices = index.search(vectors, k)
    scores, indices = torch.from_numpy(scores), torch.from_numpy(indices)
    scores[indices < 0] = -torch.inf
    return scores, indices


def write_faiss_index(index, path: Path, kind: str) -> None:
    """`faiss.write_index` through a temporary file renamed into place."""
    faiss = import_faiss(kind)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def _index_class(faiss, kind: str) -> type:
    classes = {"flat": faiss.IndexFlat, "ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat, "ivfpq": faiss.IndexIVFPQ}
    return classes[kind]


def read_faiss_index(path: Path, kind: str, params: dict[str, int], count: int):
    """An index written by [`write_faiss_index`] for `count` gallery vectors (one per image, or K per image), with
    its search parameters set; a ValueError naming the file when it cannot be read or is not an inner-product
    `kind` index of `count` vectors (with `params`' nlist for IVF kinds)."""
    faiss = import_faiss(kind)
    if not path.is_file():
        raise FileNotFoundError(f"faiss index file {str(path)!r} does not exist")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as error:
        raise ValueError(f"{path} is not a readable faiss index: {' '.join(str(error).split())[:300]}") from None
    if not isinstance(index, _index_class(faiss, kind)) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(
            f"{path} holds a {type(index).__name__} (metric {index.metric_type}), not a {kind!r} inner-product index"
        )
    if index.ntotal != count:
        raise ValueError(f"{path} holds {index.ntotal} vectors for {count} gallery vectors")
    if "nlist" in params and index.nlist != params["nlist"]:
        raise ValueError(f"{path} has {index.nlist} inverted lists but index.json's params say nlist={params['nlist']}")
    configure(index, kind, params)
    return index


__all__ = [
    "FAISS_KINDS",
    "FaissNotInstalledError",
    "build_faiss_index",
    "build_faiss_index_streamed",
    "default_params",
    "faiss_available",
    "faiss_search",
    "read_faiss_index",
    "resolve_params",
    "write_faiss_index",
]
