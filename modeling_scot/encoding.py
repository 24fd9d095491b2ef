"""Batched embedding of images and texts with a SCOT model's frozen encoder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .modeling_scot import ScotModel
from .processing_scot import ScotProcessor

IMAGE_INPUT_NAMES = ("pixel_values", "pixel_attention_mask", "spatial_shapes")


def _batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`, or nothing for None / float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def resolve_processor(model: ScotModel, processor: ScotProcessor | None) -> ScotProcessor:
    """The given processor, else the model's own; a clear error when there is none."""
    processor = processor if processor is not None else model.processor
    if processor is None:
        raise ValueError("no processor: pass processor=... or load the model from a folder that has processor files")
    return processor


@torch.inference_mode()
def encode_images(
    model: ScotModel,
    images: Sequence,
    processor: ScotProcessor | None = None,
    *,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    progress: bool | str = True,
) -> torch.Tensor:
    """Embed images (PIL images, arrays or paths) in batches; returns (N, D) float32 on CPU."""
    processor = resolve_processor(model, processor)
    device = model.device
    chunks = []
    desc = progress if isinstance(progress, str) else "embedding images"
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
        for batch in _batches(images, batch_size):
            inputs = processor(images=list(batch), return_tensors="pt")
            image_inputs = {k: v.to(device) for k, v in inputs.items() if k in IMAGE_INPUT_NAMES}
            with autocast_context(device, autocast_dtype):
                chunks.append(model.get_image_features(**image_inputs).float().cpu())
            bar.update(len(batch))
    if chunks:
        return torch.cat(chunks)
    return torch.empty(0, model.config.embed_dim)


@torch.inference_mode()
def encode_texts(
    model: ScotModel,
    texts: Sequence[str],
    processor: ScotProcessor | None = None,
    *,
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
    progress: bool | str = True,
) -> torch.Tensor:
    """Embed texts in batches of similar length (less padding); returns (N, D) float32 on CPU in input order."""
    processor = resolve_processor(model, processor)
    device = model.device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    embeds = torch.empty(len(texts), model.config.embed_dim)
    desc = progress if isinstance(progress, str) else "embedding texts"
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
        for rows in _batches(order, batch_size):
            inputs = processor(text=[texts[i] for i in rows], return_tensors="pt")
            mask = inputs.get("attention_mask")
            with autocast_context(device, autocast_dtype):
                batch = model.get_text_features(inputs["input_ids"].to(device), None if mask is None else mask.to(device))
            embeds[list(rows)] = batch.float().cpu()
            bar.update(len(rows))
    return embeds


__all__ = ["autocast_context", "encode_images", "encode_texts", "resolve_processor"]
