"""Write benchmark results from `scot eval --output` files into a saved model's card (its `model-index`),
so the pushed model shows its numbers on its Hub page.

    python -m hub.add_results --model DIR --results cirr-val.json fashioniq-val.json [--method scot]
    python -m hub.push_model --model DIR --repo-id org/name
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub.cli_output import fail
from modeling_scot.model_card import add_eval_results, eval_results_from_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub.add_results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder written by ScotModel.save_pretrained")
    parser.add_argument("--results", required=True, nargs="+", metavar="FILE", help="metrics JSON files of scot eval")
    parser.add_argument("--method", default="scot", help="which method's row to record (default: scot)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error)."""
    args = _parser().parse_args(argv)
    try:
        results = []
        for file in args.results:
            try:
                report = json.loads(Path(file).read_text(encoding="utf-8"))
                results += eval_results_from_report(report, args.method)
            except (ValueError, AttributeError, TypeError) as err:
                raise ValueError(f"{file}: not a scot eval metrics file: {err}") from err
        path = add_eval_results(args.model, results)
    except (OSError, ValueError) as err:
        return fail(err)
    print(f"recorded {len(results)} result(s) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
