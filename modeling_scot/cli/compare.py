"""`scot compare`: every method trained and tested side by side on the built-in world; options are the fields
of `CompareSettings`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from ..compare import CompareSettings, comparison_table, run_comparison
from ..evaluation.world import check_num_queries
from ..io_utils import check_output_path
from ..quickstart import scot_home
from .common import parse_dataclasses

COMPARE_WORK = "compare"


@dataclass
class CompareOutput:
    output: str | None = field(default=None, metadata={"help": "Also write the summary JSON here."})
    work_dir: str | None = field(
        default=None, metadata={"help": "Trained methods and caches, resumed (default: $SCOT_HOME/compare)."}
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Train SCOT, Text-Anchored Tuning, LinCIR and ISA on the same world data per seed, test them with the training-free
    baselines on each seed's test split, and print one table (mean and spread over the seeds)."""
    where, settings = parse_dataclasses("scot compare", cmd_compare.__doc__, (CompareOutput, CompareSettings), args.extra)
    check_num_queries(settings.test_queries, "--test-queries")
    if where.output:
        check_output_path(where.output, "--output", folder=False)
    work = Path(where.work_dir) if where.work_dir else scot_home() / COMPARE_WORK
    summary = run_comparison(settings, work, Path(where.output) if where.output else None)
    print(comparison_table(summary))
    print(f"\n{summary['seconds']} s" + (f"; summary: {where.output}" if where.output else ""))
    return 0


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    """Register `scot compare`, which parses its own options (and --help)."""
    parser = commands.add_parser(
        "compare", help="train and test every method side by side on the world", description=cmd_compare.__doc__,
        add_help=False,
    )  # fmt: skip
    parser.set_defaults(handler=cmd_compare, accepts_extra=True)


__all__ = ["CompareOutput", "add_compare_parser", "cmd_compare"]
