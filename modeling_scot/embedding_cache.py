"""Encode each distinct image and text of a triplet dataset once, cache the embeddings on disk.

The Combiner then trains on cached embeddings: the frozen encoder never runs twice on the same
input. The cache is keyed by the encoder weights, the processor settings and the data, written in
chunks (safetensors, temp file + rename) so an interrupted run resumes where it stopped; finished, each table is
one `.npy` file that training memory-maps (a cache larger than memory trains, reading the rows it gathers).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .encoding import encode_images, encode_texts, resolve_processor
from .modeling_scot import ScotModel
from .processing_scot import ScotProcessor

REQUIRED_COLUMNS = ("image", "modification", "modified_caption")
NO_CAPTION = -1


@dataclass
class EmbeddingCache:
    """Embeddings of the distinct images and texts of a dataset, indexed by the rows of its index dataset: images
    (N, D), or (N, K, D) vectors for a model whose V depends on the text (`ScotModel.pools_with_text`)."""

    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    folder: Path


def encoder_fingerprint(model: ScotModel) -> str:
    """A hash of the frozen encoder's weights (names, dtypes, shapes and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_columns(dataset: Dataset) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the triplet dataset lacks columns {missing}; it has {dataset.column_names}")


def _image_keys(dataset: Dataset, columns: dict[str, list]) -> list[str]:
    """One key per row; rows with the same key share an image (embedded once)."""
    if "source_id" in columns:
        return [str(key) for key in columns["source_id"]]
    if dataset.features["image"].dtype == "string":
        return dataset.select_columns(["image"]).to_dict()["image"]
    return [f"row-{i}" for i in range(len(dataset))]


def _index(values: Sequence[str], table: dict[str, int]) -> list[int]:
    return [table.setdefault(value, len(table)) for value in values]


def _chunk_files(
    folder: Path,
    prefix: str,
    count: int,
    chunk_size: int,
    encode: Callable[[range], torch.Tensor],
    progress: bool,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[Path, torch.Tensor | None]]:
    """Each chunk file of items 0..count-1, encoding (and writing, temp file + rename) the ones not on disk yet;
    with the chunk's embeddings when they were just encoded, else None (the caller reads the file). With `shard`
    (index, count), only every count-th chunk from the index-th: one process's share of a distributed run."""
    index, shards = shard
    numbers = range(index, -(-count // chunk_size), shards)
    mine = sum(_rows_of(number, count, chunk_size) for number in numbers)
    bar = tqdm(total=mine, desc=f"embedding {prefix}", unit=prefix[:-1], disable=not progress)
    for number in numbers:
        start = number * chunk_size
        path = folder / f"{prefix}-{number:05d}.safetensors"
        rows = range(start, min(start + chunk_size, count))
        embeds = None
        if not path.is_file():
            embeds = encode(rows)
            folder.mkdir(parents=True, exist_ok=True)  # another process sharing the cache may have finished and removed it
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
            save_file({"embeds": embeds.contiguous()}, str(tmp))
            os.replace(tmp, path)
        yield path, embeds
        bar.update(len(rows))
    bar.close()


def _read_chunk(path: Path, rows: int) -> torch.Tensor:
    embeds = load_file(path)["embeds"]
    if embeds.shape[0] != rows:
        raise ValueError(f"cache chunk {path} holds {embeds.shape[0]} rows, expected {rows}")
    return embeds


def _rows_of(number: int, count: int, chunk_size: int) -> int:
    return min(chunk_size, count - number * chunk_size)


def encode_chunks(
    folder: Path,
    prefix: str,
    count: int,
    chunk_size: int,
    encode: Callable[[range], torch.Tensor],
    progress: bool,
    shard: tuple[int, int] = (0, 1),
) -> None:
    """Make sure the chunk files of `shard` (this process's share, see `_chunk_files`) are on disk."""
    for _ in _chunk_files(folder, prefix, count, chunk_size, encode, progress, shard):
        pass


def iter_chunks(
    folder: Path,
    prefix: str,
    count: int,
    chunk_size: int,
    encode: Callable[[range], torch.Tensor],
    progress: bool,
) -> Iterator[torch.Tensor]:
    """The embeddings of items 0..count-1, one chunk at a time, encoding the chunks not on disk yet."""
    for number, (path, embeds) in enumerate(_chunk_files(folder, prefix, count, chunk_size, encode, progress)):
        yield embeds if embeds is not None else _read_chunk(path, _rows_of(number, count, chunk_size))


def chunked_encode(
    folder: Path,
    prefix: str,
    count: int,
    chunk_size: int,
    encode: Callable[[range], torch.Tensor],
    progress: bool,
) -> torch.Tensor:
    """Encode items 0..count-1 chunk by chunk, reusing chunks already on disk; all of them in memory."""
    chunks = list(iter_chunks(folder, prefix, count, chunk_size, encode, progress))
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def memory_mapped_encode(
    folder: Path,
    prefix: str,
    count: int,
    chunk_size: int,
    encode: Callable[[range], torch.Tensor],
    progress: bool,
) -> torch.Tensor:
    """As `chunked_encode`, but the finished chunks are merged once into `prefix.npy` (written through a temporary
    file, one chunk in memory at a time) and the result is memory-mapped from it: rows are read from disk as a
    batch gathers them, so a cache larger than memory trains."""
    merged = folder / f"{prefix}.npy"
    if not merged.is_file():
        if count == 0:
            return torch.empty(0, 0)
        tmp = merged.with_name(f"{prefix}.{os.getpid()}.tmp.npy")
        table = None
        try:
            for number, embeds in enumerate(iter_chunks(folder, prefix, count, chunk_size, encode, progress)):
                if table is None:
                    shape = (count, *embeds.shape[1:])
                    table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                table[number * chunk_size : number * chunk_size + len(embeds)] = embeds.float().numpy()
            table.flush()
            del table
            os.replace(tmp, merged)
        except BaseException:  # interrupted: the finished chunks stay for the next run, the partial table goes
            tmp.unlink(missing_ok=True)
            raise
    for path in folder.glob(f"{prefix}-*.safetensors"):  # merged: the chunks are no longer needed
        path.unlink(missing_ok=True)
    try:
        table = np.lib.format.open_memmap(merged, mode="r")  # a plain float array: never an object (pickled) one
    except (ValueError, OSError) as err:
        raise ValueError(f"cache file {merged} cannot be read ({err}): delete it to rebuild") from None
    if table.ndim not in (2, 3) or table.dtype != np.float32 or table.shape[0] != count:
        raise ValueError(
            f"cache file {merged} holds a {table.dtype} table of shape {table.shape}, expected {count} float32 rows: "
            "delete it to rebuild"
        )
    with warnings.catch_warnings():  # the table is read only: training only gathers rows from it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(table)


def build_embedding_cache(
    model: ScotModel,
    dataset: Dataset,
    cache_dir: str | os.PathLike,
    processor: ScotProcessor | None = None,
    *,
    image_batch_size: int = 64,
    text_batch_size: int = 256,
    chunk_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> tuple[EmbeddingCache, Dataset]:
    """Embed the distinct images and texts of a triplet dataset once and return them with an index dataset.

    The index dataset has one row per triplet: `image_index`, `text_index` (modification),
    `target_index` (modified caption), `caption_index` (-1 without a caption column) and
    `negative_indices` (hard negatives), all pointing into the cache's embedding tables. Train on
    it with [`CachedEmbeddingCollator`].
    """
    _check_columns(dataset)
    processor = resolve_processor(model, processor)
    indexed = [c for c in ("source_id", "modification", "modified_caption", "caption", "hard_negatives") if c in dataset.column_names]
    values = dataset.select_columns(indexed).to_dict()  # whole columns at once: row iteration is slow
    image_table: dict[str, int] = {}
    image_index = _index(_image_keys(dataset, values), image_table)
    first_row_of_image = {}
    for row, index in enumerate(image_index):
        first_row_of_image.setdefault(index, row)
    image_rows = [first_row_of_image[i] for i in range(len(image_table))]

    text_table: dict[str, int] = {}
    columns = {
        "image_index": image_index,
        "text_index": _index(values["modification"], text_table),
        "target_index": _index(values["modified_caption"], text_table),
    }
    has_caption = "caption" in values
    columns["caption_index"] = _index(values["caption"], text_table) if has_caption else [NO_CAPTION] * len(dataset)
    negatives = values.get("hard_negatives", [[]] * len(dataset))
    columns["negative_indices"] = [_index(list(row), text_table) for row in negatives]
    texts = list(text_table)

    key = hashlib.blake2b(digest_size=16)
    for part in (
        encoder_fingerprint(model) + (" image vectors" if model.pools_with_text else ""),
        processor.to_json_string(),
        dataset._fingerprint or "",
        json.dumps(list(image_table)),
        json.dumps(texts),
    ):
        key.update(part.encode())
    folder = Path(cache_dir) / key.hexdigest()
    folder.mkdir(parents=True, exist_ok=True)

    def encode_image_rows(rows: range) -> torch.Tensor:
        images = dataset.select([image_rows[i] for i in rows])["image"]
        return encode_images(
            model,
            images,
            processor,
            batch_size=image_batch_size,
            autocast_dtype=autocast_dtype,
            vectors=model.pools_with_text,
            progress=False,
        )

    def encode_text_rows(rows: range) -> torch.Tensor:
        return encode_texts(
            model, texts[rows.start : rows.stop], processor, batch_size=text_batch_size,
            autocast_dtype=autocast_dtype, progress=False,
        )

    image_embeds = memory_mapped_encode(folder, "images", len(image_rows), chunk_size, encode_image_rows, progress)
    text_embeds = memory_mapped_encode(folder, "texts", len(texts), chunk_size, encode_text_rows, progress)
    return EmbeddingCache(image_embeds, text_embeds, folder), Dataset.from_dict(columns)


__all__ = [
    "EmbeddingCache",
    "build_embedding_cache",
    "chunked_encode",
    "iter_chunks",
    "encode_chunks",
    "encoder_fingerprint",
    "memory_mapped_encode",
]
