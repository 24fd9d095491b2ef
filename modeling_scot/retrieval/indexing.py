"""Building and checking search indexes: a gallery source embedded by a model into a saved [`GalleryIndex`]."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from accelerate import PartialState

from ..embedding_cache import encoder_fingerprint
from ..modeling_scot import ScotModel
from ..runtime import load_model, resolve_device, resolve_dtype
from .gallery import DEFAULT_CHUNK_SIZE, embed_gallery_folder
from .index import GalleryIndex
from .sources import ImageFiles, WorldGallery
from .store import EMBEDDINGS_FILE, read_gallery_manifest

logger = logging.getLogger(__name__)

CACHE_FOLDER = "embedding-cache"


def load_model_and_fingerprint(
    model_name: str, device_name: str, dtype_name: str, image_tower: str | None = None, compile_encoders: bool = False
) -> tuple[ScotModel, str]:
    """The model `model_name` (Hub id or folder; with `image_tower`, its image tower TAT-tuned) on a device and
    dtype named as `--device`/`--dtype` take them (with `compile_encoders`, its towers compiled), and the fingerprint of its encoder's float32 weights (the same
    whatever device and dtype the index was built or searched with)."""
    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    model = load_model(model_name, "cpu", "fp32", image_tower)
    fingerprint = encoder_fingerprint(model)
    model = model.to(device=device, dtype=dtype)
    return (model.compile_encoders() if compile_encoders else model), fingerprint


def write_index(
    model: ScotModel,
    fingerprint: str,
    source: ImageFiles | WorldGallery,
    output: Path,
    kind: str,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_broken: bool = False,
) -> tuple[GalleryIndex | None, list[str]]:
    """Embed `source` with `model` (encoder `fingerprint`) and save a `kind` index of it, recording the source,
    into `output` (an interrupted run resumes); returns the index and the ids of images left out as undecodable.

    Under `accelerate launch` every process embeds its share of the gallery (see `embed_gallery`) and the main
    process builds and saves the index; the other processes return None for it. Neither embedding, merging nor
    building a faiss index holds the whole gallery in memory (see `GalleryIndex.build_from_file`)."""
    folder = embed_gallery_folder(
        model, source, output / CACHE_FOLDER, batch_size=batch_size, num_workers=num_workers, chunk_size=chunk_size,
        skip_broken=skip_broken,
    )  # fmt: skip
    state, index = PartialState(), None
    skipped = read_gallery_manifest(folder)["skipped"]
    if state.is_main_process:
        index = GalleryIndex.build_from_file(
            folder / EMBEDDINGS_FILE, kind, model_fingerprint=fingerprint, source=source.describe()
        )
        index.save(output)
        shutil.rmtree(output / CACHE_FOLDER)
    state.wait_for_everyone()
    return index, skipped

def check_encoder(index: GalleryIndex, fingerprint: str, index_path: str, model_name: str) -> None:
    """Raise a ValueError when the index at `index_path` was embedded by another encoder than the model
    `model_name` (encoder `fingerprint`); warn when the index records none."""
    if index.model_fingerprint is None:
        logger.warning(f"the index at {index_path} records no encoder fingerprint: cannot check it matches --model")
    elif index.model_fingerprint != fingerprint:
        raise ValueError(
            f"the index at {index_path} was built by a different encoder (fingerprint {index.model_fingerprint[:12]}) "
            f"than --model {model_name} ({fingerprint[:12]}): rebuild it with scot index --model {model_name}"
        )


__all__ = ["CACHE_FOLDER", "check_encoder", "load_model_and_fingerprint", "write_index"]
