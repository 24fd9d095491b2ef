"""Every door of the package under bad input, interruptions and load, as one JSON object.

    python bench/reliability.py --output reliability.json            # everything (about 4 minutes on 2 cores)
    python bench/reliability.py --only inputs folders                # some parts

Parts: `inputs` (odd and broken images and texts), `folders` (corrupted model and index folders, annotation and
prediction files through the CLI), `data` (dataset building, triplet generation and upload doors),
`interruptions` (SIGKILL and resume of `scot train` and `scot index`), `demo` (concurrent queries, memory, file
routes). Per door: inputs tried, clean errors (a result or an error naming the input), raw errors (anything else;
must be 0). `totals` sums the doors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PARTS = {
    "inputs": "reliability_inputs",
    "folders": "reliability_folders",
    "data": "reliability_data",
    "interruptions": "reliability_interruptions",
    "demo": "demo_load",
}


def _totals(doors: dict) -> dict:
    counted = [door for door in doors.values() if isinstance(door, dict) and "tried" in door]
    return {key: sum(door.get(key, 0) for door in counted) for key in ("tried", "clean", "raw")}


def run(parts: list[str]) -> dict:
    """Run the chosen parts; each part's own JSON, its seconds, and the totals over its doors."""
    report: dict = {}
    for part in parts:
        started = time.monotonic()
        result = importlib.import_module(PARTS[part]).run()
        report[part] = {"seconds": round(time.monotonic() - started, 1), "result": result}
    doors = {}
    for part in ("inputs", "folders", "data"):
        if part in report:
            doors.update({f"{part}/{name}": door for name, door in report[part]["result"].items()})
    report["totals"] = _totals(doors)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(PARTS), default=list(PARTS), help="parts to run")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    text = json.dumps(run(args.only), indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
