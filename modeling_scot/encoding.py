"""Batched embedding of images and texts with a SCOT model's frozen encoder: the one image path of the package
(training cache, `scot eval`, `scot index`, `scot embed`, the demo). Images are decoded and preprocessed by a
DataLoader (`num_workers` processes ahead of the model) and embedded batch by batch under `inference_mode`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from .modeling_scot import ScotModel
from .processing_scot import ScotProcessor, load_image

IMAGE_INPUT_NAMES = ("pixel_values", "pixel_attention_mask", "spatial_shapes")


def _starts(count: int, batch_size: int) -> range:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return range(0, count, batch_size)


def _batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in _starts(len(items), batch_size):
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


class DecodedImages(TorchDataset):
    """(index, RGB image or None, error or None) for image `index` of `load` (runs in DataLoader workers): a
    missing or undecodable image is returned as its error, not raised, so that the caller decides (skip or fail)."""

    def __init__(self, load: Callable[[int], object], count: int):
        self.load, self.count = load, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[int, object, Exception | None]:
        try:
            return index, self.load(index), None
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return index, None, err


class PreprocessBatch:
    """DataLoader collate function: the processor on a batch's decoded images -> (decoded mask, model image
    inputs, errors of the images that could not be read)."""

    def __init__(self, processor: ScotProcessor):
        self.processor = processor

    def __call__(self, items: list[tuple[int, object, Exception | None]]) -> tuple[torch.Tensor, dict, list[Exception]]:
        images = [image for _, image, _ in items if image is not None]
        decoded = torch.tensor([image is not None for _, image, _ in items])
        inputs = self.processor(images=images, return_tensors="pt") if images else {}
        errors = [error for _, _, error in items if error is not None]
        return decoded, {k: v for k, v in inputs.items() if k in IMAGE_INPUT_NAMES}, errors


def image_loader(
    load: Callable[[int], object],
    count: int,
    batches: Sequence[Sequence[int]],
    processor: ScotProcessor,
    num_workers: int = 0,
) -> DataLoader:
    """Decoded and preprocessed `batches` (lists of indices into `load`'s `count` images), `num_workers` processes
    ahead of the model; pinned memory when CUDA is there, for non-blocking copies."""
    return DataLoader(
        DecodedImages(load, count),
        batch_sampler=batches,
        collate_fn=PreprocessBatch(processor),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


@torch.inference_mode()
def embed_image_inputs(
    model: ScotModel, inputs: dict, autocast_dtype: torch.dtype | None = None, vectors: bool = False
) -> torch.Tensor:
    """float32 CPU embeddings of one preprocessed batch: (B, D) pooled, or with `vectors` (B, K, D)."""
    device = model.device
    moved = {name: value.to(device, non_blocking=True) for name, value in inputs.items()}
    embed = model.get_image_vectors if vectors else model.get_image_features
    with autocast_context(device, autocast_dtype):
        return embed(**moved).float().cpu()


@torch.inference_mode()
def encode_images(
    model: ScotModel,
    images: Sequence,
    processor: ScotProcessor | None = None,
    *,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    vectors: bool = False,
    progress: bool | str = True,
) -> torch.Tensor:
    """Embed images (PIL images, arrays or paths) in batches; returns (N, D) float32 on CPU, or with `vectors` the
    (N, K, D) image vectors. An image that cannot be read raises its error (FileNotFoundError, or a ValueError
    naming it)."""
    processor = resolve_processor(model, processor)
    batches = [range(start, min(start + batch_size, len(images))) for start in _starts(len(images), batch_size)]
    chunks = []
    desc = progress if isinstance(progress, str) else "embedding images"
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
        for _, inputs, errors in image_loader(_ImageLoader(images), len(images), batches, processor, num_workers):
            if errors:
                raise errors[0]
            chunks.append(embed_image_inputs(model, inputs, autocast_dtype, vectors))
            bar.update(len(chunks[-1]))
    if chunks:
        return torch.cat(chunks)
    rows = (model.encoder_adapter.vectors_per_image,) if vectors else ()
    return torch.empty(0, *rows, model.config.embed_dim)


class _ImageLoader:
    """`images[index]` loaded as an RGB image, named by its position."""

    def __init__(self, images: Sequence):
        self.images = images

    def __call__(self, index: int) -> Image.Image:
        return load_image(self.images[index], f"images[{index}]")


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


def encode_references(model: ScotModel, images: Sequence, text_embeds: torch.Tensor) -> torch.Tensor:
    """V (N, D) of reference images as the model's Combiner reads it: the pooled image embeddings, or for a model
    that pools with the text (`ScotModel.pools_with_text`) the vectors matched to `text_embeds` (N, D), the
    modification texts' embeddings."""
    image_embeds = encode_images(model, images, vectors=model.pools_with_text, progress=False)
    return model.pool_image(image_embeds, text_embeds)


__all__ = [
    "DecodedImages",
    "PreprocessBatch",
    "autocast_context",
    "embed_image_inputs",
    "encode_images",
    "encode_references",
    "encode_texts",
    "image_loader",
    "resolve_processor",
]
