"""The `scot` command line: argument parsing and printing only; nothing in the package imports it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..configuration_scot import SCOT_VERSION
from .compare import add_compare_parser
from .demo import add_demo_parser
from .embed import add_embed_parser
from .evaluate import add_eval_parsers
from .retrieval import add_index_parser, add_search_parser
from .train import add_train_parsers


def build_parser() -> argparse.ArgumentParser:
    """The `scot` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="scot", description="Zero-shot composed image retrieval with SCOT models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {SCOT_VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_embed_parser(commands)
    add_train_parsers(commands)
    add_eval_parsers(commands)
    add_index_parser(commands)
    add_search_parser(commands)
    add_demo_parser(commands)
    add_compare_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `scot` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except (ValueError, OSError) as err:
        print(f"scot {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scot {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
