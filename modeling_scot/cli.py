"""The `scot` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .io_utils import write_json

BENCHMARKS = ["world", "cirr", "fashioniq", "circo", "genecis"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")



def add_runtime_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """`--device`, `--dtype` and `--batch-size`, for every subcommand that runs a model."""
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA, then MPS, then CPU), cpu, cuda:0, ...")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="encoder dtype (auto: bf16 on CUDA, fp32 elsewhere)"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})")


def load_model(source: str, device_name: str, dtype_name: str):
    """A saved SCOT model on the chosen device, in eval mode."""
    from .modeling_scot import ScotModel
    from .runtime import resolve_device, resolve_dtype

    looks_local = Path(source).is_absolute() or source.startswith(".") or source.count("/") > 1
    if looks_local and not Path(source).exists():
        raise FileNotFoundError(f"--model {source!r} does not exist (a Hub id is 'name' or 'org/name')")
    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    return ScotModel.from_pretrained(source, dtype=dtype).to(device).eval()


def image_files(paths: Sequence[str]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image files; missing paths are listed in one error."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        shown = ", ".join(missing[:5])
        raise FileNotFoundError(f"{len(missing)} image path(s) do not exist: {shown}{' ...' if len(missing) > 5 else ''}")
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {list(paths)}")
    return files


def _write_embeddings(path: Path, embeds, ids: list[str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"embeds": embeds.contiguous()}, str(tmp), metadata={"ids": json.dumps(ids)})
    os.replace(tmp, path)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed images or texts with a SCOT model's frozen encoder into a safetensors file."""
    from .encoding import encode_images, encode_texts

    if args.images:
        files = image_files(args.images)
        model = load_model(args.model, args.device, args.dtype)
        embeds = encode_images(model, [str(f) for f in files], batch_size=args.batch_size)
        ids = [str(f) for f in files]
    else:
        texts_path = Path(args.texts)
        if not texts_path.is_file():
            raise FileNotFoundError(f"--texts file {args.texts!r} does not exist")
        ids = texts_path.read_text(encoding="utf-8").splitlines()
        model = load_model(args.model, args.device, args.dtype)
        embeds = encode_texts(model, ids, batch_size=args.batch_size)
    _write_embeddings(Path(args.output), embeds, ids)
    print(f"wrote {embeds.shape[0]} x {embeds.shape[1]} embeddings to {args.output}")
    return 0


def print_metrics(report: dict) -> None:
    """Print a report's metrics table and, for the world benchmark, its Recall@1 by edit type."""
    from .evaluation.runner import metrics_table

    print(metrics_table(report["methods"]))
    if "recall@1_by_edit_type" in report:
        print("\nRecall@1 by edit type")
        print(metrics_table(report["recall@1_by_edit_type"]))


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Run the whole pipeline offline on the built-in world and write OUTPUT/results.json."""
    from .quickstart import QuickstartSettings, run_quickstart, scot_home
    from .runtime import resolve_device, resolve_dtype

    output = Path(args.output) if args.output else scot_home() / "quickstart"
    settings = QuickstartSettings(
        seed=args.seed,
        num_scenes=args.num_scenes,
        epochs=args.epochs,
        test_queries=args.test_queries,
        batch_size=args.batch_size,
    )
    device = resolve_device(args.device)
    results = run_quickstart(output, settings, device, resolve_dtype(args.dtype, device))
    print_metrics(results)
    print(f"\nresults: {output / 'results.json'}  ({results['seconds']} s)")
    print(f"model:   {output / 'model'}")
    print(f"open the demo on it:  scot demo --model {output / 'model'}")
    return 0


def load_split(args: argparse.Namespace, split: str | None, category: str | None = None):
    """The `--benchmark` split in `--data-root` (FashionIQ: of one category; GeneCIS: `split` is the task)."""
    from .evaluation.circo import load_circo
    from .evaluation.cirr import load_cirr
    from .evaluation.fashioniq import load_fashioniq
    from .evaluation.genecis import load_genecis

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


def _benchmark_splits(args: argparse.Namespace) -> list:
    """The splits `scot eval` runs: every FashionIQ category / GeneCIS task unless one is named."""
    from .evaluation.fashioniq import CATEGORIES
    from .evaluation.genecis import TASKS

    if not args.data_root:
        raise ValueError(f"--benchmark {args.benchmark} needs --data-root")
    if args.benchmark == "genecis":
        return [load_split(args, task) for task in ([args.split] if args.split else TASKS)]
    if not args.split:
        raise ValueError(f"--benchmark {args.benchmark} needs --split")
    if args.benchmark == "fashioniq":
        return [load_split(args, args.split, category) for category in ([args.category] if args.category else CATEGORIES)]
    return [load_split(args, args.split)]


def _benchmark_report(args: argparse.Namespace, methods: tuple[str, ...]) -> dict:
    from .evaluation.cir_data import check_images
    from .evaluation.runner import average_reports, check_split, evaluate_split
    from .quickstart import scot_home

    if args.category and args.benchmark != "fashioniq":
        raise ValueError(f"--category is for fashioniq, not {args.benchmark}")
    if not 0.0 <= args.slerp_alpha <= 1.0:
        raise ValueError(f"--slerp-alpha must be in [0, 1], got {args.slerp_alpha}")
    splits = _benchmark_splits(args)
    for split in splits:
        check_split(split, args.save_predictions)
        check_images(split)
    model = load_model(args.model, args.device, args.dtype)
    cache_dir = Path(args.cache_dir) if args.cache_dir else scot_home() / "embeddings"
    reports = {
        split.category or split.split: evaluate_split(
            model,
            split,
            methods,
            cache_dir=cache_dir,
            predictions_dir=args.save_predictions,
            slerp_alpha=args.slerp_alpha,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
        )
        for split in splits
    }
    return next(iter(reports.values())) if len(reports) == 1 else average_reports(reports)


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any model work, an --output that is a folder or --save-predictions / --cache-dir that are files."""
    if args.output:
        output = Path(args.output)
        if output.is_dir():
            raise ValueError(f"--output {args.output!r} is a folder; give a file path for the metrics JSON")
        if any(parent.exists() and not parent.is_dir() for parent in output.parents):
            raise ValueError(f"--output {args.output!r}: a parent of it is a file, not a folder")
    for flag, value in (("--save-predictions", args.save_predictions), ("--cache-dir", args.cache_dir)):
        if value and any(path.exists() and not path.is_dir() for path in (Path(value), *Path(value).parents)):
            raise ValueError(f"{flag} {value!r} is a file (or inside one); give a folder")


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a saved model with every method of the harness on a benchmark: print a table, optionally
    write the metrics JSON (recall in percent) and the ranked lists / test-server submission files."""
    from .evaluation.world import evaluate_world
    from .methods import METHODS

    methods = tuple(dict.fromkeys(args.method)) if args.method else METHODS
    check_output_paths(args)
    if args.benchmark == "world":
        model = load_model(args.model, args.device, args.dtype)
        report = evaluate_world(model, args.seed, methods, num_queries=args.test_queries, batch_size=args.batch_size)
    else:
        report = _benchmark_report(args, methods)
    report = {"model": args.model, **report}
    print_metrics(report)
    if args.save_predictions and args.benchmark != "world":
        print(f"predictions: {args.save_predictions}/<method>/")
    if args.output:
        write_json(Path(args.output), report)
        print(f"metrics: {args.output}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a CIRR or CIRCO test-server submission file against annotations with targets (CIRR val captions,
    CIRCO val annotations); prints only the metrics, as one JSON object."""
    from .evaluation.submissions import score_submission

    for flag, path in (("--annotations", args.annotations), ("--predictions", args.predictions), ("--subset-predictions", args.subset_predictions)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path!r} does not exist")
    subset = Path(args.subset_predictions) if args.subset_predictions else None
    metrics = score_submission(args.benchmark, Path(args.annotations), Path(args.predictions), subset)
    print(json.dumps(metrics))
    return 0


def cmd_export_world(args: argparse.Namespace) -> int:
    """Export the built-in world's test split in CIRR's file layout (images, captions, image_splits)."""
    from .world.export import export_cirr

    folder = export_cirr(args.seed, args.output, num_queries=args.test_queries, split=args.split)
    print(f"wrote world seed {args.seed} as CIRR {args.split} into {folder}")
    predictions = " --save-predictions DIR" if args.split == "test1" else ""
    print(f"evaluate it:  scot eval --benchmark cirr --data-root {folder} --split {args.split} --model DIR{predictions}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a Combiner on a triplet dataset; any TrainingArguments flag (e.g. --num_train_epochs 5,
    --gradient_accumulation_steps 2, --bf16 True) may follow the options below."""
    from .runtime import resolve_device, resolve_dtype
    from .training import train_scot

    device = resolve_device(args.device)
    flags = list(args.training_flags)
    if device.type == "cpu":
        flags += ["--use_cpu", "True"]
    overrides = {
        name: getattr(args, name)
        for name in ("temperature", "hard_negative_weight", "caption_negative_weight")
        if getattr(args, name) is not None
    }
    metrics = train_scot(
        args.clip,
        args.dataset,
        Path(args.output),
        training_flags=flags,
        batch_size=args.batch_size,
        dtype=resolve_dtype(args.dtype, device),
        combiner_only=args.combiner_only,
        resume=args.resume,
        **overrides,
    )
    print(json.dumps(metrics, indent=2))
    print(f"model: {Path(args.output) / 'model'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scot", description="Zero-shot composed image retrieval with SCOT models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    embed = commands.add_parser("embed", help="embed images or texts with a model's frozen encoder", description=cmd_embed.__doc__)
    embed.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    source.add_argument("--texts", metavar="FILE", help="a text file, one text per line")
    embed.add_argument("--output", required=True, help="output .safetensors file (tensor 'embeds', metadata 'ids')")
    add_runtime_options(embed, batch_size=64)
    embed.set_defaults(handler=cmd_embed)

    quick = commands.add_parser("quickstart", help="offline end to end on the built-in world", description=cmd_quickstart.__doc__)
    quick.add_argument("--output", help="output folder (default: $SCOT_HOME/quickstart, SCOT_HOME=~/.cache/scot)")
    quick.add_argument("--seed", type=int, default=0, help="drives every random choice of the training and test data")
    quick.add_argument("--num-scenes", type=int, default=5000, help="training scenes (8 triplets each)")
    quick.add_argument("--epochs", type=int, default=16, help="Combiner training epochs")
    quick.add_argument("--test-queries", type=int, default=1000, help="benchmark queries")
    add_runtime_options(quick, batch_size=256)
    quick.set_defaults(handler=cmd_quickstart)

    train = commands.add_parser(
        "train", help="train a Combiner on a triplet dataset", description=cmd_train.__doc__, allow_abbrev=False
    )
    train.add_argument("--clip", required=True, help="Hub id or folder of the frozen dual encoder (CLIP, SigLIP, ...)")
    train.add_argument("--dataset", required=True, help="Hub id or folder of a triplet dataset (train, optional validation)")
    train.add_argument("--output", required=True, help="output folder: model/, checkpoints/, embedding-cache/")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT/checkpoints")
    train.add_argument("--combiner-only", action="store_true", help="save only the Combiner (the config names --clip)")
    train.add_argument("--temperature", type=float, help="contrastive temperature (default 0.05)")
    train.add_argument("--hard-negative-weight", type=float, help="weight of hard-negative captions (0 drops them)")
    train.add_argument("--caption-negative-weight", type=float, help="weight of the original caption (0 drops it)")
    add_runtime_options(train, batch_size=256)
    train.set_defaults(handler=cmd_train, accepts_extra=True)

    evaluate = commands.add_parser("eval", help="evaluate a saved model on a benchmark", description=cmd_eval.__doc__)
    evaluate.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    evaluate.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="benchmark to run")
    evaluate.add_argument("--data-root", help="benchmark folder in its official layout (all but world)")
    evaluate.add_argument(
        "--split",
        help="cirr: val, test1, train; fashioniq: val, test; circo: val, test; genecis: a task (default: all four)",
    )
    evaluate.add_argument("--category", choices=["dress", "shirt", "toptee"], help="fashioniq category (default: all three and their average)")
    evaluate.add_argument("--image-root", help="where the images are, when not under --data-root (cirr, fashioniq, genecis)")
    evaluate.add_argument("--method", action="append", choices=list(_methods()), help="method(s) to run (default: all)")
    evaluate.add_argument("--output", help="also write the metrics JSON here")
    evaluate.add_argument(
        "--save-predictions", metavar="DIR", help="write ranked lists, or the test-server files, into DIR/<method>/"
    )
    evaluate.add_argument("--slerp-alpha", type=float, default=0.5, help="Slerp's text weight (standard benchmarks)")
    evaluate.add_argument("--cache-dir", help="gallery embedding cache (default: $SCOT_HOME/embeddings)")
    evaluate.add_argument("--num-workers", type=int, default=2, help="processes decoding images while the model runs")
    evaluate.add_argument("--seed", type=int, default=0, help="world seed (the test split of that seed)")
    evaluate.add_argument("--test-queries", type=int, default=1000, help="world benchmark queries")
    add_runtime_options(evaluate, batch_size=256)
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
    export.add_argument("--test-queries", type=int, default=1000, help="world benchmark queries")
    export.set_defaults(handler=cmd_export_world)

    from .demo.commands import add_demo_parser
    from .retrieval.commands import add_index_parser, add_search_parser

    add_index_parser(commands)
    add_search_parser(commands)
    add_demo_parser(commands)
    return parser


def _methods() -> tuple[str, ...]:
    from .methods import METHODS

    return METHODS


def _version() -> str:
    from .configuration_scot import SCOT_VERSION

    return SCOT_VERSION


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `scot` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.training_flags = extra
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except (ValueError, OSError) as err:
        print(f"scot {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
