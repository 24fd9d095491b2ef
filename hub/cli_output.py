"""What the hub scripts print: one-line errors and upload reports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def one_line(err: BaseException) -> str:
    """An error message on one line (whitespace runs collapsed)."""
    return " ".join(str(err).split())


def fail(err: BaseException) -> int:
    """Print `err` as one `error:` line on stderr and return exit status 2."""
    print(f"error: {one_line(err)}", file=sys.stderr)
    return 2


def human_size(size: int) -> str:
    """A byte count in B, kB, MB, GB or TB (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def run_upload(upload: Callable[[], list[str] | str], folder: str | Path, repo_id: str, dry_run: bool, kind: str) -> int:
    """Run `upload` (a dry run returns the file list, a real one the commit URL) and report it; exit status."""
    try:
        result = upload()
    except (OSError, ValueError) as err:
        return fail(err)
    if dry_run:
        sizes = [(Path(folder) / name).stat().st_size for name in result]
        for name, size in zip(result, sizes):
            print(f"{human_size(size):>10}  {name}")
        print(f"{human_size(sum(sizes)):>10}  total, {len(result)} files")
        print(f"dry run: nothing was uploaded to {repo_id}")
    else:
        print(f"uploaded {folder} to {kind} {repo_id}: {result}")
    return 0
