"""Options and printing shared by the `scot` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from transformers import HfArgumentParser

from ..evaluation.runner import metrics_table, settings_lines


def add_runtime_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """`--device`, `--dtype` and `--batch-size`, for every subcommand that runs a model."""
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA, then MPS, then CPU), cpu, cuda:0, ...")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="encoder dtype (auto: bf16 on CUDA, fp32 elsewhere)"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})")


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
