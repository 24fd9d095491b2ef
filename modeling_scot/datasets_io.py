"""Open a dataset by name: a `save_to_disk` folder, a local folder of data files, or a Hub dataset id.

A local folder is read through the packaged `datasets` builder of its file type ("parquet", "csv", "json",
"arrow") with its data files resolved here: the `configs` of its dataset card (README.md YAML) when it lists
them, else the layout `datasets` infers (`data/train-*`, `train.*`, ...). The cache key names every data file
with its size and modification time, so the rows read are always those on disk now. (`load_dataset(folder)`
keys a folder whose card lists `configs` by the folder's name and the card's patterns only, so a folder
rebuilt in place, or another folder of the same name, gets the rows cached for the first one.) A Hub id is
keyed by its revision and loads as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.data_files import DataFilesDict, get_data_patterns, sanitize_patterns

CARD_NAME = "README.md"
SAVED_MARKERS = ("dataset_dict.json", "state.json")
BUILDER_OF_SUFFIX = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


def card_header(readme: Path) -> dict[str, Any] | None:
    """The YAML header of a dataset card (between `---` lines), or None when it has none."""
    try:
        text = readme.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{readme} is not UTF-8 text: {err}") from err
    parts = text.split("---", 2) if text.startswith("---") else []
    if len(parts) < 3:
        return None
    try:
        header = yaml.safe_load(parts[1])
    except yaml.YAMLError as err:
        raise ValueError(f"{readme} has invalid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(header, dict):
        raise ValueError(f"{readme} YAML header is not a mapping")
    return header


def _default_config(configs: Any, readme: Path) -> dict[str, Any]:
    """The card's default config: the one marked `default: true`, else the one named `default`, else the only one."""
    if not isinstance(configs, list) or not configs or not all(isinstance(entry, dict) for entry in configs):
        raise ValueError(f"{readme}: 'configs' must be a non-empty list of mappings")
    marked = [entry for entry in configs if entry.get("default") is True]
    named = [entry for entry in configs if entry.get("config_name") == "default"]
    chosen = marked or named or (configs if len(configs) == 1 else [])
    if not chosen:
        names = [entry.get("config_name") for entry in configs]
        raise ValueError(f"{readme}: 'configs' lists {names} and none is the default (mark one 'default: true')")
    return chosen[0]


def _patterns(folder: Path) -> tuple[dict[str, list[str]], Path]:
    """The data-file patterns of each split of `folder` and the folder they are relative to."""
    readme = folder / CARD_NAME
    header = card_header(readme) if readme.is_file() else None
    if header and "configs" in header:
        config = _default_config(header["configs"], readme)
        data_dir = config.get("data_dir")
        if data_dir is not None and not isinstance(data_dir, str):
            raise ValueError(f"{readme}: 'data_dir' of the default config is not a string")
        base = folder / data_dir if data_dir else folder
        if "data_files" in config:
            try:
                patterns = sanitize_patterns(config["data_files"])
            except (ValueError, TypeError) as err:
                raise ValueError(f"{readme}: 'data_files' of the default config: {' '.join(str(err).split())}") from err
            for split, values in patterns.items():
                if not values or not all(isinstance(value, str) and value for value in values):
                    raise ValueError(f"{readme}: 'data_files' of split {split!r} must be one or more path patterns")
            return patterns, base
    else:
        base = folder
    try:
        return get_data_patterns(str(base)), base
    except FileNotFoundError as err:  # datasets' EmptyDatasetError
        raise ValueError(f"dataset folder {folder} holds no data files") from err


def local_data_files(folder: Path) -> dict[str, list[Path]]:
    """The data files of each split of the local dataset folder `folder`, resolved as `datasets` would."""
    patterns, base = _patterns(folder)
    try:
        resolved = DataFilesDict.from_patterns(patterns, base_path=str(base), allowed_extensions=list(BUILDER_OF_SUFFIX))
    except FileNotFoundError as err:
        raise ValueError(f"dataset folder {folder}: {' '.join(str(err).split())}") from err
    root = folder.resolve()
    files = {}
    for split, names in resolved.items():
        paths = [Path(name).resolve() for name in names]
        outside = [str(path) for path in paths if not path.is_relative_to(root)]
        if outside:
            raise ValueError(f"dataset folder {folder}: split {split!r} names files outside the folder: {outside[0]}")
        if not paths:
            raise ValueError(
                f"dataset folder {folder}: split {split!r} ({', '.join(map(str, patterns[split]))}) matches no parquet, "
                "arrow, csv or json file"
            )
        files[split] = paths
    return files


def _builder(files: dict[str, list[Path]], folder: Path) -> str:
    builders = {BUILDER_OF_SUFFIX[path.suffix.lower()] for paths in files.values() for path in paths}
    if len(builders) != 1:
        raise ValueError(f"dataset folder {folder} mixes data file types ({', '.join(sorted(builders))}): keep one")
    return builders.pop()


def files_key(files: dict[str, list[Path]]) -> str:
    """A cache key naming every file of every split with its size and modification time (nanoseconds)."""
    digest = hashlib.blake2b(digest_size=12)
    for split in sorted(files):
        for path in files[split]:
            stat = path.stat()
            digest.update(f"{split}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return f"local-{digest.hexdigest()}"


def _load_files(folder: Path, split: str | None) -> tuple[str, str, dict[str, list[str]]]:
    """(builder, cache key, data files) that read the local folder `folder`."""
    files = local_data_files(folder)
    if split is not None and split not in files:
        raise ValueError(f"dataset folder {folder} has no split {split!r} (its splits: {', '.join(files)})")
    data_files = {name: [str(path) for path in paths] for name, paths in files.items()}
    return _builder(files, folder), files_key(files), data_files


def _read(source: str, read: Callable[[], Dataset | DatasetDict]) -> Dataset | DatasetDict:
    try:
        return read()
    except Exception as err:  # datasets and pyarrow raise many types for unreadable data
        message = " ".join(str(err).split()) or type(err).__name__
        cause = err.__cause__ or err.__context__
        if cause is not None and str(cause) not in message:
            message += f" ({' '.join(str(cause).split())})"
        raise ValueError(f"dataset {source!r} cannot be read: {message}") from err


def load_local_dataset(folder: Path, split: str | None = None) -> Dataset | DatasetDict:
    """The rows on disk now of the local dataset folder `folder` (all splits, or `split`)."""
    builder, key, data_files = _load_files(folder, split)
    return _read(str(folder), lambda: load_dataset(builder, name=key, data_files=data_files, split=split))


def open_dataset(source: str, split: str | None = None) -> Dataset | DatasetDict:
    """A `save_to_disk` folder, a local folder of data files, or a Hub dataset id (all splits, or `split`).

    Raises ValueError naming `source` for anything that cannot be read as a dataset.
    """
    path = Path(source)
    if path.is_file():
        raise ValueError(f"{source!r} is a file; give a dataset folder or a Hub id")
    if path.is_dir() and any((path / name).is_file() for name in SAVED_MARKERS):
        return _read(source, lambda: load_from_disk(source))
    if path.is_dir():
        return load_local_dataset(path, split)
    return _read(source, lambda: load_dataset(source, split=split))


__all__ = ["card_header", "files_key", "load_local_dataset", "local_data_files", "open_dataset"]
