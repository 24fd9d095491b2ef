"""The `scot index` and `scot search` commands."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..evaluation.world import MAX_QUERIES, check_num_queries
from ..io_utils import check_output_path
from ..methods import METHOD_NAMES, build_method
from ..retrieval.faiss_backend import import_faiss
from ..retrieval.gallery import DEFAULT_CHUNK_SIZE
from ..retrieval.index import KINDS, GalleryIndex, resolve_kind
from ..retrieval.indexing import check_encoder, load_model_and_fingerprint, write_index
from ..retrieval.query import compose_query, search_query
from ..retrieval.sources import ImageFiles, WorldGallery
from .common import (
    add_compile_option,
    add_method_options,
    add_runtime_options,
    add_slerp_option,
    method_settings,
)


def cmd_index(args: argparse.Namespace) -> int:
    """Embed a folder of images (or the built-in world's benchmark gallery) into a search index for `scot search`."""
    if args.images:
        source = ImageFiles.from_folder(args.images)
    else:
        check_num_queries(args.test_queries, "--test-queries")
        source = WorldGallery(args.world_seed, args.test_queries)
    kind = resolve_kind(args.kind, len(source.ids))
    if kind != "exact":
        import_faiss(kind)
    output = check_output_path(args.output, "--output", folder=True)
    start = time.perf_counter()
    model, fingerprint = load_model_and_fingerprint(
        args.model, args.device, args.dtype, args.image_tower, args.compile
    )
    index, skipped = write_index(
        model,
        fingerprint,
        source,
        output,
        kind,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        chunk_size=args.chunk_size,
        skip_broken=args.skip_broken,
    )
    seconds = time.perf_counter() - start
    if index is None:  # another process of an `accelerate launch` run: the main one saved the index
        return 0
    shape = f"{index.vectors} x {index.dim}-d" if index.vectors > 1 else f"{index.dim}-d"
    print(f"indexed {len(index)} images ({index.kind}, {shape} embeddings) into {output} in {seconds:.1f} s")
    if skipped:
        print(f"left out {len(skipped)} image(s) that cannot be decoded")
    return 0


def add_index_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `scot index`."""
    parser = subparsers.add_parser(
        "index", help="embed a gallery and build a search index", description=cmd_index.__doc__
    )
    parser.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of gallery images (recursive; ids are relative paths)")
    source.add_argument("--world-seed", type=int, metavar="N", help="the built-in world's benchmark gallery for seed N")
    parser.add_argument(
        "--test-queries",
        type=int,
        default=1000,
        help=f"with --world-seed: benchmark queries, at most {MAX_QUERIES} (they size the gallery)",
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
        "--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
        help="images per resumable chunk file (the unit each process of an `accelerate launch` run embeds)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-broken", action="store_true", help="leave out images that cannot be decoded (default: fail)"
    )
    add_method_options(parser, trained=False)
    add_runtime_options(parser, batch_size=64)
    add_compile_option(parser)
    parser.set_defaults(handler=cmd_index)


def _table(report: dict) -> str:
    weight = report["modality_weight"]
    lines = [
        f"query: image {report['image']}, text {report['text']!r}, method {report['method']}"
        + "".join(f", {name} {value}" for name, value in report["settings"].items())
        + ("" if weight is None else f", modality weight {weight:.3f} (text) / {1 - weight:.3f} (image)"),
        f"{'rank':>4}  {'score':>7}  id",
    ]
    lines += [f"{row['rank']:>4}  {row['score']:>7.4f}  {row['id']}" for row in report["results"]]
    return "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    """Search an index built by `scot index` with a composed query: a reference image and a modification text."""
    if Path(args.image).exists() and not Path(args.image).is_file():
        raise ValueError(f"--image {args.image!r} is not a regular file")
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image!r} does not exist")
    settings = method_settings(args, [args.method]).get(args.method, {})
    index = GalleryIndex.load(args.index)
    model, fingerprint = load_model_and_fingerprint(args.model, args.device, args.dtype, args.image_tower)
    check_encoder(index, fingerprint, args.index, args.model)
    method = build_method(args.method, **settings)
    query = compose_query(model, args.image, args.text, method)
    scores, ids = search_query(index, query, args.k, args.exclude or ())
    results = [
        {"rank": rank, "id": item, "score": round(score, 6)} for rank, (item, score) in enumerate(zip(ids, scores), start=1)
    ]
    report = {
        "index": str(args.index),
        "image": str(args.image),
        "text": args.text,
        "method": args.method,
        "settings": method.settings(),
        "k": args.k,
        "modality_weight": query.modality_weight,
        "results": results,
    }
    print(json.dumps(report) if args.json else _table(report))
    return 0


def add_search_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `scot search`."""
    parser = subparsers.add_parser(
        "search", help="search an index with an image and a modification text", description=cmd_search.__doc__
    )
    parser.add_argument("--model", required=True, help="Hub id or folder of the SCOT model that built the index")
    parser.add_argument("--index", required=True, help="index folder written by scot index")
    parser.add_argument("--image", required=True, help="reference image file")
    parser.add_argument("--text", required=True, help="modification text")
    parser.add_argument("-k", "--k", type=int, default=10, help="results to show (at most the gallery size)")
    parser.add_argument(
        "--method", default="scot", choices=list(METHOD_NAMES), help="how the query is composed (default: scot)"
    )
    parser.add_argument("--exclude", action="append", metavar="ID", help="gallery id never to return (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_method_options(parser)
    add_slerp_option(parser, "0.8, as its paper on FashionIQ and CIRCO")
    add_runtime_options(parser, batch_size=1)
    parser.set_defaults(handler=cmd_search)


__all__ = ["add_index_parser", "add_search_parser", "cmd_index", "cmd_search"]
