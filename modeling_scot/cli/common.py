"""Options and printing shared by the `scot` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from transformers import HfArgumentParser

from ..evaluation.runner import metrics_table, settings_lines


def add_runtime_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """`--device`, `--dtype` and `--batch-size`, for every subcommand that runs a model."""
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA, then MPS, then CPU), cpu, cuda:0, ...")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="encoder dtype (auto: bf16 on CUDA, fp32 elsewhere)"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})")


def add_method_options(parser: argparse.ArgumentParser, lincir: bool = True) -> None:
    """`--image-tower` (a Text-Anchored-Tuned image tower) and, with `lincir`, `--lincir` (LinCIR's phi)."""
    parser.add_argument(
        "--image-tower",
        metavar="DIR",
        help="TAT folder (written by train_tat): its LoRA adapters are merged into the model's image tower, so "
        "every image embedding (references and gallery) comes from the tuned tower",
    )
    if lincir:
        parser.add_argument(
            "--lincir", metavar="DIR", help="LinCIR phi folder (written by train_lincir): makes --method lincir available"
        )


def lincir_settings(args: argparse.Namespace, methods: Sequence[str]) -> dict:
    """The lincir method's settings from `--lincir`; refuses `--method lincir` without it."""
    if "lincir" in methods and not args.lincir:
        raise ValueError("--method lincir needs --lincir DIR, the folder of a phi written by train_lincir")
    if args.lincir and not Path(args.lincir).is_dir():
        raise FileNotFoundError(f"--lincir {args.lincir!r} is not a folder (one written by train_lincir)")
    return {"lincir": {"model_path": args.lincir}} if args.lincir else {}


def parse_dataclasses(prog: str, description: str | None, types: Sequence[type], argv: Sequence[str]) -> tuple:
    """Parse `argv` into instances of the dataclasses `types`, whose fields (defaults and help) are the options."""
    parser = HfArgumentParser(list(types), prog=prog, description=description)
    return parser.parse_args_into_dataclasses(list(argv), look_for_args_file=False)


def print_report(report: dict) -> None:
    """Print a report's metrics table, the settings each method ran with and, where the benchmark labels edit
    types, Recall@1 by edit type."""
    print(metrics_table(report["methods"]))
    if report.get("settings"):
        print("\nsettings (how chosen)")
        print(settings_lines(report["settings"]))
    if "recall@1_by_edit_type" in report:
        print("\nRecall@1 by edit type")
        print(metrics_table(report["recall@1_by_edit_type"]))


__all__ = ["add_runtime_options", "parse_dataclasses", "print_report"]
