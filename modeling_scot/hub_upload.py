"""Upload a saved SCOT model folder to the Hugging Face Hub: the one upload code path of `modeling_scot`."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .upload_checks import check_upload_files

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
DEFAULT_COMMIT_MESSAGE = "Upload SCOT model"


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.startswith("checkpoint-")


def _skip_file(name: str) -> bool:
    return name.startswith(".") or name.endswith(".tmp")


def _existing_folder(folder: str | os.PathLike) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {os.fspath(folder)!r}")
    return root


def model_files_to_upload(folder: str | os.PathLike) -> list[str]:
    """Sorted relative POSIX paths of the files in `folder` to upload.

    Hidden files and folders (`.cache`, `.git`, ...), `__pycache__`, temp files `*.tmp` and Trainer
    checkpoint folders `checkpoint-*` are skipped.
    """
    root = _existing_folder(folder)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not _skip_dir(name)]
        directory = Path(dirpath)
        files += [(directory / name).relative_to(root).as_posix() for name in filenames if not _skip_file(name)]
    return sorted(files)


def _check_config(root: Path) -> None:
    path = root / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{os.fspath(root)!r} is not a saved SCOT model: it has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {err}") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "scot":
        raise ValueError(f"{os.fspath(path)!r} has model_type {model_type!r}, expected 'scot'")


def _check_weights(root: Path, files: list[str]) -> None:
    if not any((root / name).is_file() for name in WEIGHTS_NAMES):
        raise ValueError(f"{os.fspath(root)!r} has no {WEIGHTS_NAMES[0]}: save the model with save_pretrained first")
    pickles = [name for name in files if name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(
            f"{os.fspath(root)!r} holds pickle-format weights {pickles}; SCOT models are uploaded with "
            "safetensors weights only: remove these files"
        )


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"invalid repo_id {repo_id!r}: use 'name' or 'org/name' ({err})") from err


def upload_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    dry_run: bool = False,
) -> list[str] | str:
    """Validate a saved SCOT model folder (no file empty, half-written or unreadable) and upload it to the Hub model repo `repo_id`.

    With `dry_run` return the files that would be uploaded, without any network call; otherwise
    create the repo (and the `revision` branch) when missing, upload exactly those files and return
    the commit URL.
    """
    root = _existing_folder(folder)
    files = model_files_to_upload(root)
    check_upload_files(root, files)
    _check_config(root)
    _check_weights(root, files)
    _check_repo_id(repo_id)
    if dry_run:
        return files
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=root,
        revision=revision,
        commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        create_pr=create_pr,
        allow_patterns=[glob.escape(name) for name in files],
    )
    return commit.commit_url


__all__ = ["model_files_to_upload", "upload_model_folder"]
