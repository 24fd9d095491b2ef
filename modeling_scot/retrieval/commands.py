"""The `scot index` and `scot search` commands."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from ..embedding_cache import encoder_fingerprint
from ..methods import METHODS
from ..modeling_scot import ScotModel
from .faiss_backend import import_faiss
from .gallery import embed_gallery
from .index import KINDS, GalleryIndex, resolve_kind
from .query import compose_query, search_query
from .sources import ImageFiles, WorldGallery

logger = logging.getLogger(__name__)

CACHE_FOLDER = "embedding-cache"


def load_model_and_fingerprint(model_name: str, device_name: str, dtype_name: str) -> tuple[ScotModel, str]:
    """The model `model_name` (Hub id or folder) on a device and dtype named as `--device`/`--dtype` take them, and
    the fingerprint of its encoder's float32 weights (the same whatever device and dtype the index was built or
    searched with)."""
    from ..cli import load_model
    from ..runtime import resolve_device, resolve_dtype

    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    model = load_model(model_name, "cpu", "fp32")
    fingerprint = encoder_fingerprint(model)
    return model.to(device=device, dtype=dtype), fingerprint


def write_index(
    model: ScotModel,
    fingerprint: str,
    source: ImageFiles | WorldGallery,
    output: Path,
    kind: str,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    skip_broken: bool = False,
) -> tuple[GalleryIndex, list[str]]:
    """Embed `source` with `model` (encoder `fingerprint`) and save a `kind` index of it, recording the source,
    into `output` (an interrupted run resumes); returns the index and the ids of images left out as undecodable."""
    gallery = embed_gallery(
        model, source, output / CACHE_FOLDER, batch_size=batch_size, num_workers=num_workers, skip_broken=skip_broken
    )
    index = GalleryIndex.build(
        gallery.embeddings, gallery.ids, kind, model_fingerprint=fingerprint, source=source.describe()
    )
    index.save(output)
    shutil.rmtree(output / CACHE_FOLDER)
    return index, gallery.skipped


def cmd_index(args: argparse.Namespace) -> int:
    """Embed a folder of images (or the built-in world's benchmark gallery) into a search index for `scot search`."""
    if args.images:
        source = ImageFiles.from_folder(args.images)
    else:
        source = WorldGallery(args.world_seed, args.test_queries)
    kind = resolve_kind(args.kind, len(source.ids))
    if kind != "exact":
        import_faiss(kind)
    output = Path(args.output)
    start = time.perf_counter()
    model, fingerprint = load_model_and_fingerprint(args.model, args.device, args.dtype)
    index, skipped = write_index(
        model,
        fingerprint,
        source,
        output,
        kind,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        skip_broken=args.skip_broken,
    )
    seconds = time.perf_counter() - start
    print(f"indexed {len(index)} images ({index.kind}, {index.dim}-d embeddings) into {output} in {seconds:.1f} s")
    if skipped:
        print(f"left out {len(skipped)} image(s) that cannot be decoded")
    return 0


def add_index_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `scot index`."""
    from ..cli import add_runtime_options

    parser = subparsers.add_parser(
        "index", help="embed a gallery and build a search index", description=cmd_index.__doc__
    )
    parser.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of gallery images (recursive; ids are relative paths)")
    source.add_argument("--world-seed", type=int, metavar="N", help="the built-in world's benchmark gallery for seed N")
    parser.add_argument(
        "--test-queries", type=int, default=1000, help="with --world-seed: benchmark queries (they size the gallery)"
    )
    parser.add_argument("--output", required=True, help="index folder (gallery.parquet, index.json, index.faiss)")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=KINDS,
        help="exact (torch), or with faiss: flat (exact), ivf, hnsw, ivfpq; auto: exact, or ivf for large galleries",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="processes decoding images while the model runs")
    parser.add_argument(
        "--skip-broken", action="store_true", help="leave out images that cannot be decoded (default: fail)"
    )
    add_runtime_options(parser, batch_size=64)
    parser.set_defaults(handler=cmd_index)


def check_encoder(index: GalleryIndex, fingerprint: str, index_path: str, model_name: str) -> None:
    """Raise a ValueError when the index at `index_path` was embedded by another encoder than the model
    `model_name` (encoder `fingerprint`); warn when the index records none."""
    if index.model_fingerprint is None:
        logger.warning(f"the index at {index_path} records no encoder fingerprint: cannot check it matches --model")
    elif index.model_fingerprint != fingerprint:
        raise ValueError(
            f"the index at {index_path} was built by a different encoder (fingerprint {index.model_fingerprint[:12]}) "
            f"than --model {model_name} ({fingerprint[:12]}): rebuild it with scot index --model {model_name}"
        )


def _table(report: dict) -> str:
    weight = report["modality_weight"]
    lines = [
        f"query: image {report['image']}, text {report['text']!r}, method {report['method']}"
        + ("" if weight is None else f", modality weight {weight:.3f} (text) / {1 - weight:.3f} (image)"),
        f"{'rank':>4}  {'score':>7}  id",
    ]
    lines += [f"{row['rank']:>4}  {row['score']:>7.4f}  {row['id']}" for row in report["results"]]
    return "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    """Search an index built by `scot index` with a composed query: a reference image and a modification text."""
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image!r} does not exist")
    index = GalleryIndex.load(args.index)
    model, fingerprint = load_model_and_fingerprint(args.model, args.device, args.dtype)
    check_encoder(index, fingerprint, args.index, args.model)
    query = compose_query(model, args.image, args.text, args.method)
    scores, ids = search_query(index, query, args.k, args.exclude or ())
    results = [
        {"rank": rank, "id": item, "score": round(score, 6)} for rank, (item, score) in enumerate(zip(ids, scores), start=1)
    ]
    report = {
        "index": str(args.index),
        "image": str(args.image),
        "text": args.text,
        "method": args.method,
        "k": args.k,
        "modality_weight": query.modality_weight,
        "results": results,
    }
    print(json.dumps(report) if args.json else _table(report))
    return 0


def add_search_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `scot search`."""
    from ..cli import add_runtime_options

    parser = subparsers.add_parser(
        "search", help="search an index with an image and a modification text", description=cmd_search.__doc__
    )
    parser.add_argument("--model", required=True, help="Hub id or folder of the SCOT model that built the index")
    parser.add_argument("--index", required=True, help="index folder written by scot index")
    parser.add_argument("--image", required=True, help="reference image file")
    parser.add_argument("--text", required=True, help="modification text")
    parser.add_argument("-k", "--k", type=int, default=10, help="results to show (at most the gallery size)")
    parser.add_argument(
        "--method", default="scot", choices=list(METHODS), help="how the query is composed (default: scot)"
    )
    parser.add_argument("--exclude", action="append", metavar="ID", help="gallery id never to return (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_runtime_options(parser, batch_size=1)
    parser.set_defaults(handler=cmd_search)


__all__ = [
    "add_index_parser",
    "add_search_parser",
    "check_encoder",
    "cmd_index",
    "cmd_search",
    "load_model_and_fingerprint",
    "write_index",
]
