"""Upload a saved SCOT model folder to the Hugging Face Hub.

    python -m hub.push_model --model DIR --repo-id org/name [--private] [--dry-run]

Refuses a folder with an empty, truncated or half-written file (e.g. a 0-byte model.safetensors).
"""

from __future__ import annotations

import argparse
import sys

from hub.cli_output import run_upload
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error)."""
    args = _parser().parse_args(argv)

    def upload() -> list[str] | str:
        return upload_model_folder(
            args.model,
            args.repo_id,
            private=args.private,
            token=args.token,
            revision=args.revision,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
        )

    return run_upload(upload, args.model, args.repo_id, args.dry_run, "model")

if __name__ == "__main__":
    sys.exit(main())
