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
        "--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="encoder dtype (auto: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere)"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})")


def add_compile_option(parser: argparse.ArgumentParser) -> None:
    """`--compile`, for the subcommands that embed many images or texts."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the encoder towers: faster on large GPU jobs, after the first batches pay the compile time",
    )


TRAINED_FOLDERS = {"lincir": "LinCIR phi folder (written by train_lincir)",
                   "isa": "ISA query-encoder folder (written by train_isa)"}
"""The methods that need a trained folder of their own, by name: the option `--NAME DIR` gives it."""


def add_method_options(parser: argparse.ArgumentParser, trained: bool = True) -> None:
    """`--image-tower` (a Text-Anchored-Tuned image tower) and, with `trained`, `--lincir` and `--isa`."""
    parser.add_argument(
        "--image-tower",
        metavar="DIR",
        help="TAT folder (written by train_tat): its LoRA adapters are merged into the model's image tower, so "
        "every image embedding (references and gallery) comes from the tuned tower",
    )
    if trained:
        for name, what in TRAINED_FOLDERS.items():
            parser.add_argument(f"--{name}", metavar="DIR", help=f"{what}: makes --method {name} available")


def add_slerp_option(parser: argparse.ArgumentParser, default: str) -> None:
    """`--slerp-alpha`, Slerp's text weight; `default` says what it is when not given."""
    parser.add_argument("--slerp-alpha", type=float, help=f"Slerp's text weight, 0 to 1 (default: {default})")


def method_settings(args: argparse.Namespace, methods: Sequence[str]) -> dict:
    """Settings fixed on the command line: `--slerp-alpha`, and the folders (`model_path`) that `--lincir` /
    `--isa` give; refuses `--method NAME` without its folder."""
    settings = {}
    for name, what in TRAINED_FOLDERS.items():
        folder = getattr(args, name, None)
        if name in methods and not folder:
            raise ValueError(f"--method {name} needs --{name} DIR, the {what}")
        if folder and not Path(folder).is_dir():
            raise FileNotFoundError(f"--{name} {folder!r} is not a folder (the {what})")
        if folder:
            settings[name] = {"model_path": folder}
    if getattr(args, "slerp_alpha", None) is not None:
        if not 0.0 <= args.slerp_alpha <= 1.0:
            raise ValueError(f"--slerp-alpha must be in [0, 1], got {args.slerp_alpha}")
        settings["slerp"] = {"alpha": args.slerp_alpha}
    return settings


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


__all__ = ["add_compile_option", "add_runtime_options", "parse_dataclasses", "print_report"]
