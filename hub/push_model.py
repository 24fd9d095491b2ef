"""Upload a saved SCOT model folder to the Hugging Face Hub.

    python -m hub.push_model --model DIR --repo-id org/name [--private] [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modeling_scot.hub_upload import upload_model_folder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub.push_model",
        description="Validate a folder written by ScotModel.save_pretrained and upload it to a Hub model repo.",
    )
    parser.add_argument("--model", required=True, help="folder written by ScotModel.save_pretrained")
    parser.add_argument("--repo-id", required=True, help="target model repo, 'name' or 'org/name'")
    parser.add_argument(
        "--private", action="store_true", default=None, help="create the repo as private (default: Hub default)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the files to upload and upload nothing")
    parser.add_argument("--token", help="Hub token (default: the stored login or HF_TOKEN)")
    parser.add_argument("--revision", help="branch to upload to, created when missing (default: main)")
    parser.add_argument("--commit-message", help="commit message (default: 'Upload SCOT model')")
    return parser


def _human_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _print_dry_run(folder: Path, files: list[str], repo_id: str) -> None:
    sizes = [(folder / name).stat().st_size for name in files]
    for name, size in zip(files, sizes):
        print(f"{_human_size(size):>10}  {name}")
    print(f"{_human_size(sum(sizes)):>10}  total, {len(files)} files")
    print(f"dry run: nothing was uploaded to {repo_id}")


def _one_line(err: Exception) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error)."""
    args = _parser().parse_args(argv)
    try:
        result = upload_model_folder(
            args.model,
            args.repo_id,
            private=args.private,
            token=args.token,
            revision=args.revision,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
        )
    except (OSError, ValueError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print_dry_run(Path(args.model), result, args.repo_id)
    else:
        print(f"uploaded {args.model} to {args.repo_id}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
