"""`scot eval`, `scot score` and `scot export-world`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..evaluation.cir_data import CIRSplit, check_images
from ..evaluation.circo import load_circo
from ..evaluation.cirr import load_cirr
from ..evaluation.fashioniq import CATEGORIES, load_fashioniq
from ..evaluation.genecis import TASKS, load_genecis
from ..evaluation.runner import average_reports, check_split, evaluate_split
from ..evaluation.submissions import score_submission
from ..evaluation.world import (
    MAX_QUERIES,
    check_num_queries,
    load_world,
    load_world_validation,
)
from ..io_utils import check_output_path, write_json
from ..methods import DEFAULT_METHOD_NAMES, METHOD_NAMES
from ..quickstart import scot_home
from ..runtime import load_model
from ..world.export import export_cirr
from .common import (
    TRAINED_FOLDERS,
    add_compile_option,
    add_method_options,
    add_runtime_options,
    add_slerp_option,
    method_settings,
    print_report,
)

logger = logging.getLogger(__name__)

BENCHMARKS = ["world", "cirr", "fashioniq", "circo", "genecis"]


def load_split(args: argparse.Namespace, split: str | None, category: str | None = None) -> CIRSplit:
    """The `--benchmark` split in `--data-root` (FashionIQ: of one category; GeneCIS: `split` is the task)."""
    root = Path(args.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {args.data_root!r} does not exist or is not a folder")
    image_root = Path(args.image_root) if args.image_root else None
    if args.benchmark == "cirr":
        return load_cirr(root, split, image_root)
    if args.benchmark == "fashioniq":
        return load_fashioniq(root, split, category, image_root)
    if args.benchmark == "circo":
        return load_circo(root, split)
    return load_genecis(root, split, image_root)


def benchmark_splits(args: argparse.Namespace) -> tuple[list[CIRSplit], CIRSplit | None]:
    """The splits `scot eval` runs (every FashionIQ category / GeneCIS task unless one is named) and the
    validation split that tunes method settings (the world's own; none for the file benchmarks)."""
    if args.category and args.benchmark != "fashioniq":
        raise ValueError(f"--category is for fashioniq, not {args.benchmark}")
    if args.benchmark == "world":
        check_num_queries(args.test_queries, "--test-queries")
        return [load_world(args.seed, args.test_queries)], load_world_validation(args.seed)
    if not args.data_root:
        raise ValueError(f"--benchmark {args.benchmark} needs --data-root")
    if args.benchmark == "genecis":
        return [load_split(args, task) for task in ([args.split] if args.split else TASKS)], None
    if not args.split:
        raise ValueError(f"--benchmark {args.benchmark} needs --split")
    if args.benchmark == "fashioniq":
        categories = [args.category] if args.category else CATEGORIES
        return [load_split(args, args.split, category) for category in categories], None
    return [load_split(args, args.split)], None


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any model work, an --output that is a folder or --save-predictions / --cache-dir that are files."""
    if args.output:
        check_output_path(args.output, "--output", folder=False)
    for flag, value in (("--save-predictions", args.save_predictions), ("--cache-dir", args.cache_dir)):
        if value:
            check_output_path(value, flag, folder=True)


def chosen_methods(args: argparse.Namespace) -> tuple[str, ...]:
    """`--method` (repeatable), else every method that runs with the model alone, and those whose trained
    folders are given (`--lincir`, `--isa`)."""
    if args.method:
        return tuple(dict.fromkeys(args.method))
    return DEFAULT_METHOD_NAMES + tuple(name for name in TRAINED_FOLDERS if getattr(args, name))


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a saved model with every method of the harness on a benchmark: print a table and the settings
    each method ran with, optionally write the metrics JSON (recall in percent) and the ranked lists /
    test-server submission files."""
    methods = chosen_methods(args)
    check_output_paths(args)
    settings = method_settings(args, methods)
    splits, validation = benchmark_splits(args)
    for split in splits:
        check_split(split, args.save_predictions)
        check_images(split)
    model = load_model(args.model, args.device, args.dtype, args.image_tower, args.compile)
    cache_dir = Path(args.cache_dir) if args.cache_dir else scot_home() / "embeddings"
    reports = {
        split.category or split.split: evaluate_split(
            model,
            split,
            methods,
            cache_dir=cache_dir,
            method_settings=settings,
            validation=validation,
            predictions_dir=args.save_predictions,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
        )
        for split in splits
    }
    report = next(iter(reports.values())) if len(reports) == 1 else average_reports(reports)
    report = {"model": args.model, **report}
    print_report(report)
    if args.save_predictions:
        print(f"predictions: {args.save_predictions}/<method>/")
    if args.output:
        write_json(Path(args.output), report)
        print(f"metrics: {args.output}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a CIRR or CIRCO test-server submission file against annotations with targets (CIRR val captions,
    CIRCO val annotations); prints only the metrics, as one JSON object."""
    for flag, path in (("--annotations", args.annotations), ("--predictions", args.predictions), ("--subset-predictions", args.subset_predictions)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path!r} does not exist")
    subset = Path(args.subset_predictions) if args.subset_predictions else None
    metrics = score_submission(args.benchmark, Path(args.annotations), Path(args.predictions), subset)
    print(json.dumps(metrics))
    return 0


def cmd_export_world(args: argparse.Namespace) -> int:
    """Export the built-in world's test split in CIRR's file layout (images, captions, image_splits)."""
    check_num_queries(args.test_queries, "--test-queries")
    check_output_path(args.output, "--output", folder=True)
    folder = export_cirr(args.seed, args.output, num_queries=args.test_queries, split=args.split)
    print(f"wrote world seed {args.seed} as CIRR {args.split} into {folder}")
    predictions = " --save-predictions DIR" if args.split == "test1" else ""
    print(f"evaluate it:  scot eval --benchmark cirr --data-root {folder} --split {args.split} --model DIR{predictions}")
    return 0


def add_eval_parsers(commands: argparse._SubParsersAction) -> None:
    """Register `scot eval`, `scot score` and `scot export-world`."""
    evaluate = commands.add_parser("eval", help="evaluate a saved model on a benchmark", description=cmd_eval.__doc__)
    evaluate.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    evaluate.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="benchmark to run")
    evaluate.add_argument("--data-root", help="benchmark folder in its official layout (all but world)")
    evaluate.add_argument(
        "--split",
        help="cirr: val, test1, train; fashioniq: val, test; circo: val, test; genecis: a task (default: all four)",
    )
    evaluate.add_argument("--category", choices=CATEGORIES, help="fashioniq category (default: all three and their average)")
    evaluate.add_argument("--image-root", help="where the images are, when not under --data-root (cirr, fashioniq, genecis)")
    evaluate.add_argument("--method", action="append", choices=list(METHOD_NAMES), help="method(s) to run (default: all; lincir and isa when their folders are given)")
    evaluate.add_argument("--output", help="also write the metrics JSON here")
    evaluate.add_argument(
        "--save-predictions", metavar="DIR", help="write ranked lists, or the test-server files, into DIR/<method>/"
    )
    add_slerp_option(
        evaluate, "its paper's value for the benchmark, 0.9 CIRR, 0.8 FashionIQ and CIRCO; on the world, tuned on the "
        "validation split"
    )
    evaluate.add_argument("--cache-dir", help="gallery embedding cache (default: $SCOT_HOME/embeddings)")
    evaluate.add_argument("--num-workers", type=int, default=2, help="processes decoding images while the model runs")
    evaluate.add_argument("--seed", type=int, default=0, help="world seed (the test split of that seed)")
    evaluate.add_argument(
        "--test-queries", type=int, default=1000, help=f"world benchmark queries (at most {MAX_QUERIES})"
    )
    add_method_options(evaluate)
    add_runtime_options(evaluate, batch_size=256)
    add_compile_option(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    score = commands.add_parser("score", help="score a CIRR or CIRCO submission file", description=cmd_score.__doc__)
    score.add_argument("--benchmark", required=True, choices=["cirr", "circo"])
    score.add_argument("--annotations", required=True, help="cap.rc2.val.json (cirr) or annotations/val.json (circo)")
    score.add_argument("--predictions", required=True, help="the recall file (cirr) or the submission file (circo)")
    score.add_argument("--subset-predictions", help="cirr: the recall_subset file")
    score.set_defaults(handler=cmd_score)

    export = commands.add_parser(
        "export-world", help="export the world's test split in CIRR's layout", description=cmd_export_world.__doc__
    )
    export.add_argument("--output", required=True, help="new folder for the export")
    export.add_argument("--seed", type=int, default=0, help="world seed (the test split of that seed)")
    export.add_argument("--split", default="val", choices=["val", "test1"], help="CIRR split name to write (test1: no targets)")
    export.add_argument(
        "--test-queries", type=int, default=1000, help=f"world benchmark queries (at most {MAX_QUERIES})"
    )
    export.set_defaults(handler=cmd_export_world)


__all__ = ["BENCHMARKS", "add_eval_parsers", "benchmark_splits", "cmd_eval", "cmd_score", "cmd_export_world"]
