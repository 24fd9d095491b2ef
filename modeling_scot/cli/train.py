"""`scot quickstart` and `scot train`: their options are the fields of the settings dataclasses they fill."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.world import check_num_queries
from ..quickstart import QuickstartSettings, run_quickstart, scot_home
from ..runtime import RuntimeArguments, resolve_device, resolve_dtype
from ..training import ScotTrainArguments, ScotTrainingArguments, train_scot
from .common import parse_dataclasses, print_report

QUICKSTART_OUTPUT = "quickstart"


@dataclass
class QuickstartOutput:
    output: str | None = field(
        default=None, metadata={"help": "Output folder (default: $SCOT_HOME/quickstart, SCOT_HOME=~/.cache/scot)."}
    )


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Run the whole pipeline offline on the built-in world and write OUTPUT/results.json."""
    where, settings, runtime = parse_dataclasses(
        "scot quickstart", cmd_quickstart.__doc__, (QuickstartOutput, QuickstartSettings, RuntimeArguments), args.extra
    )
    check_num_queries(settings.test_queries, "--test-queries")
    output = Path(where.output) if where.output else scot_home() / QUICKSTART_OUTPUT
    device = resolve_device(runtime.device)
    results = run_quickstart(output, settings, device, resolve_dtype(runtime.dtype, device))
    print_report({"methods": results["methods"], "settings": results["settings_by_method"],
                  "recall@1_by_edit_type": results["recall@1_by_edit_type"]})
    stages = ", ".join(f"{name} {seconds} s" for name, seconds in results["stage_seconds"].items())
    print(f"\nresults: {output / 'results.json'}  ({results['seconds']} s: {stages})")
    print(f"model:   {output / 'model'}")
    print(f"open the demo on it:  scot demo --model {output / 'model'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a Combiner on a triplet dataset. Options: the encoder, data and loss settings below, --device and
    --dtype, and every TrainingArguments field (SCOT's defaults shown), e.g. --num_train_epochs 5 --bf16 True."""
    train_args, runtime, training_args = parse_dataclasses(
        "scot train", cmd_train.__doc__, (ScotTrainArguments, RuntimeArguments, ScotTrainingArguments), args.extra
    )
    if any(arg.split("=")[0] in ("--output_dir", "--output-dir") for arg in args.extra):
        raise ValueError("scot train keeps its checkpoints in OUTPUT/checkpoints: give --output, not --output_dir")
    device = resolve_device(runtime.device)
    if device.type == "cpu" and not training_args.use_cpu:
        training_args = dataclasses.replace(training_args, use_cpu=True)
    metrics = train_scot(train_args, training_args, dtype=resolve_dtype(runtime.dtype, device))
    print(json.dumps(metrics, indent=2))
    print(f"model: {Path(train_args.output) / 'model'}")
    return 0


def add_train_parsers(commands: argparse._SubParsersAction) -> None:
    """Register `scot quickstart` and `scot train`, which parse their own options (and --help)."""
    for name, handler, summary in (
        ("quickstart", cmd_quickstart, "offline end to end on the built-in world"),
        ("train", cmd_train, "train a Combiner on a triplet dataset"),
    ):
        parser = commands.add_parser(name, help=summary, description=handler.__doc__, add_help=False)
        parser.set_defaults(handler=handler, accepts_extra=True)


__all__ = ["QuickstartOutput", "add_train_parsers", "cmd_quickstart", "cmd_train"]
