"""Embed a gallery with a model's frozen image encoder: streamed through a DataLoader, cached in resumable chunks.

Image decoding and preprocessing run in DataLoader workers (`num_workers`) while the model embeds the
previous batch; only the batches in flight are held in memory. Embeddings are written in chunks
(safetensors, temporary file + rename) under `cache_dir/<key>/chunks`, the key naming the encoder
weights, the processor settings, the autocast dtype and the images, so an interrupted run resumes at the
first unfinished chunk. A finished gallery is saved as `cache_dir/<key>/gallery.parquet` + `gallery.json`
and loaded from there on the next call. An image that cannot be decoded is stored as a zero row in its
chunk and left out of the finished gallery (listed in its `skipped`). A multi-vector encoder (BLIP-2) stores
all K vectors of each image, (N, K, D).

Under `accelerate launch` (several processes, on one machine or several sharing the cache folder) each process
embeds every n-th chunk into the shared chunks folder; once all are written the main process merges them into the
gallery, and every process loads it. An interrupted run resumes from the chunks on disk, whatever the number of
processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from accelerate import PartialState
from torch.utils.data import DataLoader

from ..embedding_cache import encode_chunks, encoder_fingerprint, iter_chunks
from ..encoding import embed_image_inputs, image_loader, resolve_processor
from ..modeling_scot import ScotModel
from ..processing_scot import ScotProcessor
from .sources import GallerySource
from ..io_utils import write_json
from .store import (
    EMBEDDINGS_FILE,
    MANIFEST_FILE,
    SHOWN,
    Gallery,
    GalleryWriter,
    check_ids,
    gallery_manifest,
    listed,
    read_gallery_manifest,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024
CHUNKS_FOLDER = "chunks"


class _EmbeddingStream:
    """Embeds rows in order through one DataLoader and hands them out chunk by chunk.

    Called with the rows of each chunk of its share that is not on disk yet (every `stride`-th chunk: one process
    of `stride`); the loader reads the share's chunks from the first such one on and restarts only if a later
    chunk turns out to be on disk already.
    """

    def __init__(
        self,
        model: ScotModel,
        source: GallerySource,
        processor: ScotProcessor,
        *,
        batch_size: int,
        chunk_size: int,
        num_workers: int,
        autocast_dtype: torch.dtype | None,
        skip_broken: bool,
        stride: int = 1,
    ):
        self.model, self.source, self.processor = model, source, processor
        self.batch_size, self.chunk_size, self.num_workers = batch_size, chunk_size, num_workers
        self.stride = stride
        self.autocast_dtype, self.skip_broken = autocast_dtype, skip_broken
        self._batches = iter(())
        self._next_row = -1

    def _loader(self, start: int) -> DataLoader:
        count = len(self.source.ids)
        batches = [
            range(first, min(first + self.batch_size, chunk_start + self.chunk_size, count))
            for chunk_start in range(start, count, self.chunk_size * self.stride)
            for first in range(chunk_start, min(chunk_start + self.chunk_size, count), self.batch_size)
        ]
        return image_loader(self.source.image, count, batches, self.processor, self.num_workers)

    def _embed(self, decoded: torch.Tensor, inputs: dict, errors: list[Exception]) -> torch.Tensor:
        if errors and not self.skip_broken:
            raise ValueError(
                f"{len(errors)} gallery image(s) cannot be decoded: {'; '.join(map(str, errors[:SHOWN]))}"
                " (embed_gallery(skip_broken=True) and scot index --skip-broken leave such images out)"
            )
        adapter, dim = self.model.encoder_adapter, self.model.config.embed_dim
        embeds = torch.zeros(len(decoded), *((adapter.vectors_per_image, dim) if adapter.multi_vector else (dim,)))
        if inputs:
            embeds[decoded] = embed_image_inputs(self.model, inputs, self.autocast_dtype, adapter.multi_vector)
        return embeds

    def __call__(self, rows: range) -> torch.Tensor:
        if rows.start != self._next_row:
            self._batches = iter(self._loader(rows.start))
            self._next_row = rows.start
        parts, row = [], rows.start
        while row < rows.stop:
            parts.append(self._embed(*next(self._batches)))
            row += len(parts[-1])
        self._next_row = rows.start + self.chunk_size * self.stride  # where the share's next chunk starts
        return torch.cat(parts)


def _cache_key(
    fingerprint: str, processor: ScotProcessor, content_key: str, ids: list[str], autocast_dtype: torch.dtype | None
) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in (fingerprint, processor.to_json_string(), str(autocast_dtype), content_key, json.dumps(ids)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _merge_chunks(
    chunks: Path, folder: Path, ids: list[str], chunk_size: int, stream: _EmbeddingStream, fingerprint: str
) -> None:
    """Write the gallery of the chunk files into `folder`, one chunk in memory at a time, without the images that
    could not be decoded (zero rows); its manifest last."""
    writer, skipped = GalleryWriter(folder / EMBEDDINGS_FILE), []
    chunk_ids = (ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size))
    for names, embeds in zip(chunk_ids, iter_chunks(chunks, "images", len(ids), chunk_size, stream, progress=False)):
        decoded = embeds.flatten(1).norm(dim=1) > 0
        skipped += [item for item, ok in zip(names, decoded.tolist()) if not ok]
        if decoded.any():
            writer.write([item for item, ok in zip(names, decoded.tolist()) if ok], embeds[decoded])
    if len(skipped) == len(ids):
        raise ValueError(f"none of the {len(ids)} gallery images could be decoded: {listed(skipped)}")
    writer.close()
    write_json(folder / MANIFEST_FILE, gallery_manifest(writer.count, writer.row_shape, writer.normalized, fingerprint, skipped))


def embed_gallery_folder(
    model: ScotModel,
    source: GallerySource,
    cache_dir: str | os.PathLike,
    processor: ScotProcessor | None = None,
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    skip_broken: bool = False,
    progress: bool = True,
) -> Path:
    """As [`embed_gallery`], but returns the folder of the saved gallery (`gallery.parquet` + `gallery.json`)
    instead of loading it: neither embedding nor merging ever holds more than a chunk of the gallery in memory."""
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    processor = resolve_processor(model, processor)
    ids = list(source.ids)
    if not ids:
        raise ValueError("the gallery is empty: no images to embed")
    check_ids(ids, len(ids))
    content_key = source.content_key()
    fingerprint = encoder_fingerprint(model)
    folder = Path(cache_dir) / _cache_key(fingerprint, processor, content_key, ids, autocast_dtype)
    if not (folder / MANIFEST_FILE).is_file():
        state = PartialState()
        chunks = folder / CHUNKS_FOLDER
        chunks.mkdir(parents=True, exist_ok=True)
        stream = _EmbeddingStream(
            model,
            source,
            processor,
            batch_size=batch_size,
            chunk_size=chunk_size,
            num_workers=num_workers,
            autocast_dtype=autocast_dtype,
            skip_broken=skip_broken,
            stride=state.num_processes,
        )
        shard = (state.process_index, state.num_processes)
        encode_chunks(chunks, "images", len(ids), chunk_size, stream, progress and state.is_main_process, shard)
        state.wait_for_everyone()
        if state.is_main_process:
            _merge_chunks(chunks, folder, ids, chunk_size, stream, fingerprint)
            shutil.rmtree(chunks, ignore_errors=True)
        state.wait_for_everyone()
    skipped = read_gallery_manifest(folder)["skipped"]
    if skipped and not skip_broken:
        raise ValueError(
            f"{len(skipped)} gallery image(s) could not be decoded in an earlier run with skip_broken=True: "
            f"{listed(skipped)}"
        )
    if skipped:
        logger.warning(f"left out {len(skipped)} gallery image(s) that cannot be decoded: {listed(skipped)}")
    return folder


def embed_gallery(
    model: ScotModel,
    source: GallerySource,
    cache_dir: str | os.PathLike,
    processor: ScotProcessor | None = None,
    *,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    skip_broken: bool = False,
    progress: bool = True,
) -> Gallery:
    """Embed every image of `source` (see [`ImageFiles`], [`DatasetImages`], [`WorldGallery`]) into a [`Gallery`].

    Missing image files fail before any model work (FileNotFoundError listing them). An image that
    cannot be decoded raises a ValueError naming it, or with `skip_broken=True` is left out with a
    warning. Rerunning after an interruption resumes from the chunks in `cache_dir`.
    """
    folder = embed_gallery_folder(
        model, source, cache_dir, processor, batch_size=batch_size, chunk_size=chunk_size, num_workers=num_workers,
        autocast_dtype=autocast_dtype, skip_broken=skip_broken, progress=progress,
    )  # fmt: skip
    return Gallery.load(folder)


__all__ = ["embed_gallery", "embed_gallery_folder"]
