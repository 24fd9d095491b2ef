"""Search latency and recall: one composed query end to end (encode image + text, compose, search) on CPU.

For each gallery size (random L2-normalised embeddings of the world CLIP's dimension) and each index kind
(`exact` torch top-k, and with faiss installed `flat`, `ivf`, `hnsw`, `ivfpq`), reports build time, index
bytes, load time, process RSS, recall@k against exact search over random queries drawn like the gallery,
and p50/p95 latency of single queries: search alone, and end to end from a world image and modification
text (the shipped world CLIP with a fresh Combiner).

`--data uniform` draws uniformly on the sphere: the worst case for approximate search, where the true
neighbours are barely closer than the rest. `--data lowrank` adds structure (a rank-32 signal plus
isotropic noise), closer to how approximate indexes behave on real image embeddings.

    python bench/search.py --sizes 10000 100000 1000000 --threads 2 --output bench-search.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from modeling_scot import ScotModel, encode_images, encode_texts, world
from modeling_scot.io_utils import write_json
from modeling_scot.methods import ScotMethod
from modeling_scot.retrieval import GalleryIndex, exact_search, faiss_available
from modeling_scot.retrieval.index import FAISS_FILE


def rss_mb() -> float:
    """Resident memory of this process now (Linux), else its peak."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 3),
        "p95_ms": round(float(np.percentile(seconds, 95)) * 1000, 3),
    }


def timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


LOWRANK_RANK = 32
LOWRANK_NOISE = 0.3


def embeddings(data: str, count: int, dim: int, seed: int) -> torch.Tensor:
    """`count` unit vectors: uniform on the sphere, or a shared random rank-32 signal plus noise."""
    generator = torch.Generator().manual_seed(seed)
    if data == "uniform":
        return F.normalize(torch.randn(count, dim, generator=generator), dim=-1)
    basis = torch.randn(LOWRANK_RANK, dim, generator=torch.Generator().manual_seed(-1))
    signal = torch.randn(count, LOWRANK_RANK, generator=generator) @ basis
    return F.normalize(signal + LOWRANK_NOISE * torch.randn(count, dim, generator=generator), dim=-1)


def end_to_end(model: ScotModel, index: GalleryIndex, queries: list, k: int) -> list[float]:
    """Seconds per query: embed its image and text, compose, search."""
    seconds = []
    for image, text in queries:
        start = time.perf_counter()
        image_embeds = encode_images(model, [image], progress=False)
        text_embeds = encode_texts(model, [text], progress=False)
        index.search(ScotMethod().queries(model, image_embeds, text_embeds), k)
        seconds.append(time.perf_counter() - start)
    return seconds


def recall(found: list[list[str | None]], truth: torch.Tensor, ids: list[str]) -> float:
    """Share of the exact top-k found, over all queries."""
    positions = {name: position for position, name in enumerate(ids)}
    hits = 0
    for row, true in zip(found, truth.tolist()):
        hits += len({positions[i] for i in row if i is not None} & set(true))
    return hits / truth.numel()


def measure_kind(
    kind: str, gallery: torch.Tensor, ids: list[str], probe: torch.Tensor, truth: torch.Tensor, model, queries, args
) -> dict:
    index, build_s = timed(lambda: GalleryIndex.build(gallery, ids, kind))
    with tempfile.TemporaryDirectory() as folder:
        index.save(folder)
        index_bytes = (Path(folder) / FAISS_FILE).stat().st_size if kind != "exact" else gallery.numel() * 4
        del index
        gc.collect()
        index, load_s = timed(lambda: GalleryIndex.load(folder))
    _, found = index.search(probe, args.k)
    search_seconds = [timed(lambda: index.search(probe[i : i + 1], args.k))[1] for i in range(len(probe))]
    end_to_end(model, index, queries[:3], args.k)  # warm-up
    result = {
        "kind": kind,
        "params": index.params,
        "build_s": round(build_s, 3),
        "load_s": round(load_s, 3),
        "index_bytes": index_bytes,
        "rss_mb": round(rss_mb(), 1),
        f"recall@{args.k}": round(recall(found, truth, ids), 4),
        "search": percentiles(search_seconds),
        "end_to_end": percentiles(end_to_end(model, index, queries, args.k)),
    }
    print(json.dumps({"size": len(ids), **result}), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="gallery sizes")
    parser.add_argument("--queries", type=int, default=200, help="random queries for recall and search latency")
    parser.add_argument("--repeats", type=int, default=50, help="end-to-end queries (world images and texts)")
    parser.add_argument("--kinds", nargs="+", help="index kinds (default: exact, plus flat ivf hnsw ivfpq with faiss)")
    parser.add_argument("--data", choices=["uniform", "lowrank"], default="uniform", help="how embeddings are drawn")
    parser.add_argument("--threads", type=int, help="torch and faiss threads (default: torch's default)")
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    kinds = args.kinds or ["exact", *(["flat", "ivf", "hnsw", "ivfpq"] if faiss_available() else [])]
    faiss_version = None
    if faiss_available():
        import faiss

        faiss_version = faiss.__version__
        if args.threads:
            faiss.omp_set_num_threads(args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = ScotModel.from_clip(world.clip_path()).eval()
    benchmark = world.build_benchmark(args.seed, args.repeats)
    queries = [(world.render_scene(query.reference), query.modification) for query in benchmark.queries]
    dim = model.config.embed_dim
    probe = embeddings(args.data, args.queries, dim, args.seed + 1)

    sizes = []
    for size in args.sizes:
        gallery = embeddings(args.data, size, dim, args.seed)
        ids = [f"img-{i}" for i in range(size)]
        _, truth = exact_search(probe, gallery, args.k)
        runs = [measure_kind(kind, gallery, ids, probe, truth, model, queries, args) for kind in kinds]
        sizes.append({"size": size, "embedding_bytes": gallery.numel() * 4, "kinds": runs})
        del gallery, ids
        gc.collect()

    result = {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "faiss": faiss_version,
        "dim": dim,
        "k": args.k,
        "queries": args.queries,
        "repeats": args.repeats,
        "data": args.data,
        "sizes": sizes,
    }
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
