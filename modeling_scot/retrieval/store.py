"""A gallery of embedded images, stored as a parquet dataset (`id`, `embedding`) plus a JSON manifest.

An image's `embedding` is one fixed-size list of D floats, or, for a multi-vector encoder (BLIP-2), a fixed-size
list of K such lists (one per query token)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Features, List, Value

from ..io_utils import write_json
from ..json_files import Entry, read_json

EMBEDDINGS_FILE = "gallery.parquet"
MANIFEST_FILE = "gallery.json"
FORMAT = "scot-gallery"
FORMAT_VERSION = 1
NORM_TOLERANCE = 1e-3
SHOWN = 5
BATCH_ROWS = 65_536
"""Rows read at a time when checking a gallery file's embeddings without holding them all."""


def listed(items: Sequence[object]) -> str:
    """The first few items and how many there are in all, for error messages."""
    shown = ", ".join(repr(item) for item in items[:SHOWN])
    return f"{shown}{f' ... ({len(items)} in all)' if len(items) > SHOWN else ''}"


def check_embeddings(embeddings: torch.Tensor, name: str) -> None:
    """Raise a ValueError unless `embeddings` is a non-empty, finite (N, D) or (N, K, D) floating tensor."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim not in (2, 3) or not embeddings.is_floating_point():
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name} must be a 2-D (N, D) or 3-D (N, K, D) floating tensor, got {shape}")
    if 0 in embeddings.shape:
        raise ValueError(f"{name} is empty: shape {tuple(embeddings.shape)}")
    bad_rows = (~torch.isfinite(embeddings).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if bad_rows:
        rows = listed(bad_rows)
        raise ValueError(f"{name} has NaN or infinite values in {len(bad_rows)} row(s): {rows}")


def vectors_per_item(embeddings: torch.Tensor) -> int:
    """K of (N, K, D) multi-vector embeddings; 1 for (N, D)."""
    return embeddings.shape[1] if embeddings.ndim == 3 else 1


def check_ids(ids: Sequence[str], count: int, where: str = "gallery") -> None:
    """Raise a ValueError, naming `where`, unless there are `count` distinct string ids."""
    if len(ids) != count:
        raise ValueError(f"{where}: got {len(ids)} ids for {count} embeddings")
    not_strings = [row for row, item in enumerate(ids) if not isinstance(item, str)]
    if not_strings:
        raise ValueError(f"{where}: ids must be strings, got other values in rows {listed(not_strings)}")
    duplicates = [item for item, seen in Counter(ids).items() if seen > 1]
    if duplicates:
        raise ValueError(f"{where}: ids must be unique; repeated: {listed(duplicates)}")


def is_normalized(embeddings: torch.Tensor) -> bool:
    """Whether every vector has unit L2 norm (within a float32 tolerance)."""
    return bool(((embeddings.norm(dim=-1) - 1).abs() <= NORM_TOLERANCE).all())


def _embedding_feature(shape: Sequence[int]) -> List:
    """The `datasets` feature of one row of (..., D) or (..., K, D) embeddings."""
    feature = List(Value("float32"), length=shape[-1])
    return List(feature, length=shape[1]) if len(shape) == 3 else feature


class GalleryWriter:
    """Writes a gallery parquet file batch by batch (one row group each), so a gallery larger than memory is
    written one batch at a time; the file appears under its name (temporary file + rename) only on `close`.

    Tracks what the manifest needs: the row count, the shape of a row and whether every vector is L2-normalised."""

    def __init__(self, path: Path):
        self.path, self._tmp = Path(path), Path(path).with_name(Path(path).name + ".tmp")
        self._writer: pq.ParquetWriter | None = None
        self.count, self.row_shape, self.normalized = 0, (), True

    def write(self, ids: Sequence[str], embeddings: torch.Tensor) -> None:
        """Append float32 (n, D) or (n, K, D) `embeddings` named by `ids`."""
        embeddings = embeddings.detach().to(torch.float32).cpu().contiguous()
        features = Features({"id": Value("string"), "embedding": _embedding_feature(embeddings.shape)})
        if self._writer is None:
            self.row_shape = tuple(embeddings.shape[1:])
            self._writer = pq.ParquetWriter(self._tmp, features.arrow_schema, use_dictionary=False, compression="none")
        elif tuple(embeddings.shape[1:]) != self.row_shape:
            raise ValueError(f"gallery rows of shape {tuple(embeddings.shape[1:])} after rows of shape {self.row_shape}")
        column = pa.array(embeddings.numpy().reshape(-1))  # float embeddings do not compress
        for size in reversed(embeddings.shape[1:]):
            column = pa.FixedSizeListArray.from_arrays(column, size)
        self._writer.write_table(pa.Table.from_arrays([pa.array(list(ids), pa.string()), column], schema=features.arrow_schema))
        self.count += len(ids)
        self.normalized = self.normalized and is_normalized(embeddings)

    def close(self) -> None:
        """Finish the file and rename it into place."""
        if self._writer is None:
            raise ValueError(f"no embeddings were written to {self.path}")
        self._writer.close()
        os.replace(self._tmp, self.path)


def write_embeddings(path: Path, ids: Sequence[str], embeddings: torch.Tensor) -> None:
    """Write ids and float32 (N, D) or (N, K, D) embeddings as a `datasets` parquet file (through a temporary
    file)."""
    writer = GalleryWriter(path)
    writer.write(ids, embeddings)
    writer.close()


def _is_float_vector(kind: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type) and kind.list_size >= 1


def _is_embedding_type(kind: pa.DataType) -> bool:
    """A fixed-size list of floats (one vector), or a fixed-size list of those (K vectors)."""
    return _is_float_vector(kind) or (
        pa.types.is_fixed_size_list(kind) and kind.list_size >= 1 and _is_float_vector(kind.value_type)
    )


def _open_gallery_file(path: Path) -> pq.ParquetFile:
    """A gallery parquet file whose schema holds string `id`s and fixed-size float `embedding`s (or fixed-size
    lists of them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gallery file {str(path)!r} does not exist")
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable parquet file: {error}") from None
    schema = handle.schema_arrow
    for name, holds, expected in (
        ("id", pa.types.is_string, "strings"),
        ("embedding", _is_embedding_type, "non-empty fixed-size lists of floats, or fixed-size lists of them"),
    ):
        if schema.get_field_index(name) < 0:
            raise ValueError(f"{path}: column {name!r} is missing (columns: {schema.names})")
        if not holds(schema.field(name).type):
            raise ValueError(f"{path}: column {name!r} must hold {expected}, got {schema.field(name).type}")
    return handle


def _read_column(handle: pq.ParquetFile, path: Path, name: str, batch_rows: int | None = None):
    """The batches of one column (all at once without `batch_rows`); a ValueError naming the file on bad data."""
    try:
        if batch_rows is None:
            yield handle.read(columns=[name]).column(0).combine_chunks()
        else:
            for batch in handle.iter_batches(batch_size=batch_rows, columns=[name]):
                yield batch.column(0)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: cannot read column {name!r}: {error}") from None


def _embedding_rows(column: pa.Array, path: Path, first_row: int) -> np.ndarray:
    """A chunk of the `embedding` column as (rows, D) or (rows, K, D) float32; a ValueError naming null rows."""
    values, shape, entries_per_row = column, [len(column)], 1
    while pa.types.is_fixed_size_list(values.type):
        if values.null_count:
            invalid = np.flatnonzero(~values.is_valid().to_numpy(zero_copy_only=False))
            rows = sorted({first_row + int(entry) // entries_per_row for entry in invalid})
            raise ValueError(f"{path}: column 'embedding' is null in rows {listed(rows)}")
        shape.append(values.type.list_size)
        entries_per_row *= values.type.list_size
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(shape)


def _check_finite_rows(embeddings: np.ndarray, ids: list[str], path: Path, first_row: int) -> None:
    finite = np.isfinite(embeddings).all(axis=tuple(range(1, embeddings.ndim)))
    bad_rows = [first_row + row for row in np.flatnonzero(~finite).tolist()]
    if bad_rows:
        raise ValueError(
            f"{path}: the embeddings of {len(bad_rows)} row(s) hold NaN or infinite values: ids "
            f"{listed([ids[row] for row in bad_rows])} (rows {listed(bad_rows)}); "
            "files written by scot never hold such rows: the file is damaged, rebuild it"
        )


def _read_gallery_ids(handle: pq.ParquetFile, path: Path) -> list[str]:
    try:
        ids = next(_read_column(handle, path, "id")).to_pylist()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: column 'id' holds text that is not UTF-8 ({error.reason})") from None
    check_ids(ids, handle.metadata.num_rows, str(path))
    return ids


def iter_embeddings(path: Path, batch_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 (rows, D) or (rows, K, D) embeddings) of a gallery parquet file, `batch_rows` rows at a
    time (default `BATCH_ROWS`), each batch checked for nulls and NaN or infinite values (a ValueError naming the
    file and the rows)."""
    handle = _open_gallery_file(path)
    first_row = 0
    for column in _read_column(handle, path, "embedding", batch_rows or BATCH_ROWS):
        embeddings = _embedding_rows(column, path, first_row)
        finite = np.isfinite(embeddings).all(axis=tuple(range(1, embeddings.ndim)))
        if not finite.all():
            _check_finite_rows(embeddings, _read_gallery_ids(handle, path), path, first_row)
        yield first_row, embeddings
        first_row += len(embeddings)


def read_ids(path: Path, check_rows: bool = True) -> list[str]:
    """The `id` column of a gallery parquet file, after checking (with `check_rows`) every embedding row is finite
    (read in batches, so the embeddings are never all in memory)."""
    ids = _read_gallery_ids(_open_gallery_file(path), path)
    for _ in iter_embeddings(path) if check_rows else ():
        pass
    return ids


def read_embeddings(path: Path) -> tuple[list[str], torch.Tensor]:
    """Ids and the (N, D) or (N, K, D) float32 embeddings of a gallery parquet file; a ValueError naming the file for a
    missing or mistyped column, a null, repeated or non-string id, or rows holding NaN or infinite values."""
    handle = _open_gallery_file(path)
    ids = _read_gallery_ids(handle, path)
    embeddings = _embedding_rows(next(_read_column(handle, path, "embedding")), path, 0)
    _check_finite_rows(embeddings, ids, path, 0)
    return ids, torch.from_numpy(embeddings.copy())


def gallery_file_shape(path: Path) -> tuple[int, ...]:
    """(N, D) or (N, K, D): the shape of a gallery parquet file's embeddings, from its metadata and schema."""
    handle = _open_gallery_file(path)
    kind, shape = handle.schema_arrow.field("embedding").type, [handle.metadata.num_rows]
    while pa.types.is_fixed_size_list(kind):
        shape.append(kind.list_size)
        kind = kind.value_type
    return tuple(shape)


def read_manifest(folder: Path, file_name: str, what: str) -> Entry:
    """The JSON object in file `file_name` of `folder`, for typed field access; a FileNotFoundError when it is
    missing, an `AnnotationError` (a ValueError naming the file) when it is not a JSON object."""
    path = Path(folder) / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a {what}: it has no {file_name}")
    data = read_json(path)
    if not isinstance(data, dict):
        raise Entry(path, None, {}).error(None, f"expected a JSON object, got {type(data).__name__}")
    return Entry(path, None, data)


@dataclass
class Gallery:
    """Embedded gallery images: `ids[i]` names row i of `embeddings`, (N, D) float32, or (N, K, D) with K vectors
    per image (BLIP-2's query tokens).

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
        return self.embeddings.shape[-1]

    @property
    def vectors(self) -> int:
        """K, the vectors per image (1 for single-vector encoders)."""
        return vectors_per_item(self.embeddings)

    def manifest(self) -> dict:
        """The JSON manifest saved next to the embeddings."""
        shape = tuple(self.embeddings.shape[1:])
        return gallery_manifest(len(self), shape, is_normalized(self.embeddings), self.model_fingerprint, self.skipped)

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
        manifest = read_gallery_manifest(folder)
        ids, embeddings = read_embeddings(folder / EMBEDDINGS_FILE)
        count, vectors, dim = manifest["count"], manifest["vectors"], manifest["dim"]
        expected = (count, dim) if vectors == 1 and embeddings.ndim == 2 else (count, vectors, dim)
        if embeddings.shape != expected:
            raise ValueError(
                f"{folder / EMBEDDINGS_FILE} holds {tuple(embeddings.shape)} embeddings but {MANIFEST_FILE} "
                f"says {expected}"
            )
        return cls(ids, embeddings, manifest["model_fingerprint"], manifest["skipped"])


def gallery_manifest(
    count: int, row_shape: Sequence[int], normalized: bool, fingerprint: str | None, skipped: Sequence[str]
) -> dict:
    """The JSON manifest of a saved gallery of `count` rows of shape (D,) or (K, D)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": count,
        "dim": row_shape[-1],
        "vectors": row_shape[0] if len(row_shape) == 2 else 1,
        "normalized": normalized,
        "model_fingerprint": fingerprint,
        "skipped": list(skipped),
    }


def read_gallery_manifest(folder: Path) -> dict:
    """The checked fields of a saved gallery's `gallery.json`: count, dim, vectors, model_fingerprint, skipped."""
    manifest = read_manifest(folder, MANIFEST_FILE, "saved gallery")
    skipped = manifest.get("skipped", list)
    if not all(isinstance(item, str) for item in skipped):
        raise manifest.error("skipped", f"expected a list of image ids, got {skipped!r:.200}")
    return {
        "count": manifest.count("count", 1),
        "dim": manifest.count("dim", 1),
        "vectors": manifest.count("vectors", 1) if "vectors" in manifest.data else 1,
        "model_fingerprint": manifest.get("model_fingerprint", (str, type(None))),
        "skipped": list(skipped),
    }

__all__ = [
    "Gallery",
    "GalleryWriter",
    "gallery_manifest",
    "gallery_file_shape",
    "iter_embeddings",
    "read_gallery_manifest",
    "check_embeddings",
    "check_ids",
    "read_embeddings",
    "read_ids",
    "vectors_per_item",
    "write_embeddings",
]
