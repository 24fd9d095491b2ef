"""A gallery of embedded images, stored as a parquet dataset (`id`, `embedding`) plus a JSON manifest."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Features, List, Value

from ..io_utils import write_json

EMBEDDINGS_FILE = "gallery.parquet"
MANIFEST_FILE = "gallery.json"
FORMAT = "scot-gallery"
FORMAT_VERSION = 1
NORM_TOLERANCE = 1e-3
SHOWN = 5


def listed(items: Sequence[str]) -> str:
    """The first few items and how many there are in all, for error messages."""
    shown = ", ".join(repr(item) for item in items[:SHOWN])
    return f"{shown}{f' ... ({len(items)} in all)' if len(items) > SHOWN else ''}"


def check_embeddings(embeddings: torch.Tensor, name: str) -> None:
    """Raise a ValueError unless `embeddings` is a non-empty, finite (N, D) floating tensor."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name} must be a 2-D floating tensor (N, D), got {shape}")
    if embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(embeddings.shape)}")
    bad_rows = (~torch.isfinite(embeddings).all(dim=1)).nonzero().flatten().tolist()
    if bad_rows:
        rows = listed([str(row) for row in bad_rows])
        raise ValueError(f"{name} has NaN or infinite values in {len(bad_rows)} row(s): {rows}")


def check_ids(ids: Sequence[str], count: int) -> None:
    """Raise a ValueError unless there are `count` distinct string ids."""
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} ids for {count} embeddings")
    if not all(isinstance(item, str) for item in ids):
        raise ValueError("gallery ids must be strings")
    duplicates = [item for item, seen in Counter(ids).items() if seen > 1]
    if duplicates:
        raise ValueError(f"gallery ids must be unique; repeated: {listed(duplicates)}")


def is_normalized(embeddings: torch.Tensor) -> bool:
    """Whether every row has unit L2 norm (within a float32 tolerance)."""
    return bool(((embeddings.norm(dim=1) - 1).abs() <= NORM_TOLERANCE).all())


def write_embeddings(path: Path, ids: Sequence[str], embeddings: torch.Tensor) -> None:
    """Write ids and float32 embeddings as a `datasets` parquet file (through a temporary file)."""
    dim = embeddings.shape[1]
    features = Features({"id": Value("string"), "embedding": List(Value("float32"), length=dim)})
    flat = pa.array(embeddings.detach().to(torch.float32).cpu().contiguous().numpy().reshape(-1))
    table = pa.Table.from_arrays(
        [pa.array(list(ids), pa.string()), pa.FixedSizeListArray.from_arrays(flat, dim)], schema=features.arrow_schema
    )
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, use_dictionary=False, compression="none")  # float embeddings do not compress
    os.replace(tmp, path)


def read_ids(path: Path) -> list[str]:
    """The `id` column of an embeddings parquet file."""
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def read_embeddings(path: Path) -> tuple[list[str], torch.Tensor]:
    """Ids and the (N, D) float32 embeddings of an embeddings parquet file."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    values = column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table.column("id").to_pylist(), torch.from_numpy(values.reshape(-1, dim).copy())


def read_manifest(folder: Path, file_name: str, what: str) -> dict:
    """The JSON file `file_name` of `folder`; a clear error when it is missing or not JSON."""
    path = Path(folder) / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a {what}: it has no {file_name}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


@dataclass
class Gallery:
    """Embedded gallery images: `ids[i]` names row i of `embeddings` (N, D float32).

    `model_fingerprint` names the encoder that embedded them; `skipped` lists ids left out because
    their images could not be decoded.
    """

    ids: list[str]
    embeddings: torch.Tensor
    model_fingerprint: str | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_embeddings(self.embeddings, "gallery embeddings")
        self.ids = list(self.ids)
        check_ids(self.ids, self.embeddings.shape[0])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def manifest(self) -> dict:
        """The JSON manifest saved next to the embeddings."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "count": len(self),
            "dim": self.dim,
            "normalized": is_normalized(self.embeddings),
            "model_fingerprint": self.model_fingerprint,
            "skipped": self.skipped,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `gallery.parquet` then `gallery.json` (its presence marks a complete gallery) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_embeddings(folder / EMBEDDINGS_FILE, self.ids, self.embeddings)
        write_json(folder / MANIFEST_FILE, self.manifest())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Gallery:
        """A gallery saved with [`Gallery.save`]."""
        folder = Path(folder)
        manifest = read_manifest(folder, MANIFEST_FILE, "saved gallery")
        ids, embeddings = read_embeddings(folder / EMBEDDINGS_FILE)
        if embeddings.shape != (manifest["count"], manifest["dim"]):
            raise ValueError(
                f"{folder / EMBEDDINGS_FILE} holds {tuple(embeddings.shape)} embeddings but {MANIFEST_FILE} "
                f"says ({manifest['count']}, {manifest['dim']})"
            )
        return cls(ids, embeddings, manifest["model_fingerprint"], list(manifest["skipped"]))


__all__ = ["Gallery", "check_embeddings", "check_ids", "read_embeddings", "read_ids", "write_embeddings"]
