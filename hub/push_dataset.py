"""Upload a dataset folder written by `hub.build_dataset` to a Hugging Face Hub dataset repo.

    python -m hub.push_dataset --folder scot-triplets/ --repo-id org/scot-triplets [--private] [--dry-run] [--token T]

The folder is checked first (a README.md with YAML whose `configs` name its parquet files; no empty, truncated
or half-written file); --dry-run lists the files that would be uploaded and makes no network call.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from hub.cli_output import run_upload
from modeling_scot.datasets_io import CARD_NAME, card_header, local_data_files
from modeling_scot.hub_upload import model_files_to_upload
from modeling_scot.upload_checks import check_upload_files

DEFAULT_COMMIT_MESSAGE = "Upload SCOT triplets"


def dataset_files_to_upload(folder: Path) -> list[str]:
    """Check that `folder` is a dataset folder whose card lists `configs` that name its parquet files, all complete;
    the files to upload, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    readme = folder / CARD_NAME
    if not readme.is_file():
        raise ValueError(f"{folder} has no README.md dataset card: build it with python -m hub.build_dataset")
    header = card_header(readme)
    if header is None:
        raise ValueError(f"{readme} has no YAML header between '---' lines")
    if "configs" not in header:
        raise ValueError(f"{readme} YAML has no 'configs' listing the data files of each split")
    files = model_files_to_upload(folder)
    if not any(name.endswith(".parquet") for name in files):
        raise ValueError(f"{folder} holds no parquet files")
    check_upload_files(folder, files)
    listed = {path.relative_to(folder.resolve()).as_posix() for paths in local_data_files(folder).values() for path in paths}
    hidden = sorted(listed - set(files))
    if hidden:
        raise ValueError(f"{readme} 'configs' names {hidden[0]}, which would not be uploaded (a hidden or temp file)")
    return files


def push_dataset(
    folder: Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    dry_run: bool = False,
) -> list[str] | str:
    """Upload exactly the files of `folder` to the dataset repo `repo_id` (created when missing).

    With `dry_run` return the files, without any network call; otherwise the commit URL.
    """
    files = dataset_files_to_upload(folder)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"invalid --repo-id {repo_id!r}: use 'name' or 'org/name'") from err
    if dry_run:
        return files
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=folder,
        commit_message=commit_message,
        allow_patterns=[glob.escape(name) for name in files],
    )
    return commit.commit_url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub.push_dataset", description="Check a built triplet dataset folder and upload it to a Hub dataset repo."
    )
    parser.add_argument("--folder", required=True, type=Path, help="folder written by hub.build_dataset")
    parser.add_argument("--repo-id", required=True, help="target dataset repo, 'name' or 'org/name'")
    parser.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    parser.add_argument("--dry-run", action="store_true", help="list the files to upload and upload nothing")
    parser.add_argument("--token", help="Hub token (default: the stored login or HF_TOKEN)")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error)."""
    args = _parser().parse_args(argv)

    def upload() -> list[str] | str:
        return push_dataset(
            args.folder,
            args.repo_id,
            private=args.private,
            token=args.token,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
        )

    return run_upload(upload, args.folder, args.repo_id, args.dry_run, "dataset")

if __name__ == "__main__":
    sys.exit(main())
