"""From image files and texts to embeddings: the package's path against transformers' default on the same inputs,
with the matmul limit of the machine measured on the spot. Used by `bench/encode.py --images DIR`."""

from __future__ import annotations

import random
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, CLIPImageProcessor, PreTrainedConfig, Siglip2Config, Siglip2ImageProcessorPil

from modeling_scot import ScotConfig, ScotModel, ScotProcessor
from modeling_scot.encoding import encode_texts
from modeling_scot.retrieval import ImageFiles, embed_gallery
from modeling_scot.word_tokenizer import build_word_level_tokenizer
from modeling_scot.world import caption, sample_scene, world_vocabulary

JPEG_QUALITY = 90
COCO_SIDES = ((640, 480), (480, 640), (640, 427), (500, 375), (640, 360), (427, 640))
"""Sizes of the most common COCO images (width, height)."""


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write `count` COCO-like JPEGs (COCO's common sizes, smooth content with edges and texture, quality 90)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        width, height = COCO_SIDES[number % len(COCO_SIDES)]
        coarse = rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        texture = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        path = folder / f"{number:06d}.jpg"
        Image.fromarray(np.clip(smooth + texture, 0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def make_texts(count: int, seed: int = 0) -> list[str]:
    """`count` captions of the built-in world, of varied lengths."""
    rng = random.Random(seed)
    return [caption(sample_scene(rng), rng) for _ in range(count)]


def image_processor_for(config: PreTrainedConfig):
    """SigLIP 2's native-resolution processor (up to the config's patch count), else a CLIP image processor of
    the config's image size."""
    vision = config.vision_config
    if isinstance(config, Siglip2Config):
        return Siglip2ImageProcessorPil(patch_size=vision.patch_size, max_num_patches=vision.num_patches)
    size = vision.image_size
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def patch_tokens(config: PreTrainedConfig) -> int:
    """Tokens of one image in the vision tower."""
    vision = config.vision_config
    if isinstance(config, Siglip2Config):
        return vision.num_patches
    return (vision.image_size // vision.patch_size) ** 2 + 1


def random_image_inputs(config: PreTrainedConfig, batch_size: int) -> dict[str, torch.Tensor]:
    """The image tower's inputs for `batch_size` random images: pixels, and SigLIP 2's patch mask and shapes."""
    if isinstance(config, Siglip2Config):
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(batch_size)]
        return dict(image_processor_for(config)(images=images, return_tensors="pt"))
    size = config.vision_config.image_size
    return {"pixel_values": torch.randn(batch_size, 3, size, size)}


def processor_for(config: PreTrainedConfig, shipped: ScotProcessor | None) -> ScotProcessor:
    """The shipped processor, else `image_processor_for` the config and a word-level tokenizer."""
    if shipped is not None:
        return shipped
    return ScotProcessor(image_processor_for(config), build_word_level_tokenizer(world_vocabulary(), model_max_length=77))


def matmul_gflops(tokens: int, width: int, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """GFLOP/s of the MLP matmul of a transformer layer, (tokens x width) @ (width x 4 width), in `dtype`."""
    left, right = torch.randn(tokens, width, dtype=dtype), torch.randn(width, 4 * width, dtype=dtype)
    left @ right
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 3:
        left @ right
        calls += 1
    return 2 * tokens * width * 4 * width * calls / (time.perf_counter() - started) / 1e9


def image_gflop(model: ScotModel, config: PreTrainedConfig) -> float:
    """GFLOP of one image through the image tower (matmuls, convolutions and attention, as torch counts them)."""
    inputs = random_image_inputs(config, 1)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.encoder.dtype)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.get_image_features(**inputs)
    return counter.get_total_flops() / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def default_images_per_s(encoder, image_processor, paths: list[Path], batch_size: int) -> float:
    """transformers as its docs show it: open each file with PIL, the model's image processor, fp32 weights."""

    def run() -> None:
        with torch.no_grad():
            for start in range(0, len(paths), batch_size):
                images = [Image.open(path).convert("RGB") for path in paths[start : start + batch_size]]
                encoder.get_image_features(**image_processor(images=images, return_tensors="pt"))

    return len(paths) / timed(run)


def default_texts_per_s(encoder, tokenizer, texts: list[str], batch_size: int) -> float:
    def run() -> None:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
                encoder.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])

    return len(texts) / timed(run)


def measure_files(
    config: PreTrainedConfig, shipped: ScotProcessor | None, paths: list[Path], texts: list[str], dtype, args
) -> dict:
    """One run: the package's `embed_gallery` and `encode_texts` (weights in `dtype`), then transformers' default,
    on the same files and texts, with the machine's matmul limit."""
    processor = processor_for(config, shipped)
    torch.manual_seed(0)
    model = ScotModel(ScotConfig(encoder_config=config.to_dict())).to(dtype).eval()
    model.processor = processor
    if args.compile:
        model.compile_encoders()
    vision = config.vision_config
    tokens = args.batch_size * patch_tokens(config)
    limits = {name: matmul_gflops(tokens, vision.hidden_size, kind) for name, kind in (("bf16", torch.bfloat16),
                                                                                       ("fp32", torch.float32))}
    gflop = image_gflop(model, config)
    with tempfile.TemporaryDirectory() as cache:
        embed_gallery(model, ImageFiles(paths[: args.batch_size]), cache, progress=False)  # warm-up
    with tempfile.TemporaryDirectory() as cache:
        seconds = timed(lambda: embed_gallery(model, ImageFiles(paths), cache, batch_size=args.batch_size,
                                              num_workers=args.num_workers, progress=False))
    encode = partial(encode_texts, model, texts, batch_size=args.text_batch_size, progress=False)
    if args.compile:  # compiled once per text length first, as the images were in the warm-up
        encode()
    ours_texts = len(texts) / timed(encode)
    ours_rss = peak_rss_mb()
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config).eval()
    default_images = default_images_per_s(encoder, processor.image_processor, paths, args.batch_size)
    default_texts = default_texts_per_s(encoder, processor.tokenizer, texts, args.text_batch_size)
    ours_images = len(paths) / seconds
    limit = limits["bf16" if dtype == torch.bfloat16 else "fp32"] / gflop
    return {
        "images": len(paths),
        "texts": len(texts),
        "images_per_s": round(ours_images, 2),
        "default_images_per_s": round(default_images, 2),
        "images_speedup": round(ours_images / default_images, 3),
        "gflop_per_image": round(gflop, 2),
        "matmul_gflops": {name: round(value, 1) for name, value in limits.items()},
        "limit_images_per_s": round(limit, 2),
        "share_of_limit": round(ours_images / limit, 3),
        "texts_per_s": round(ours_texts, 1),
        "default_texts_per_s": round(default_texts, 1),
        "texts_speedup": round(ours_texts / default_texts, 3),
        "peak_rss_mb": {"ours": round(ours_rss, 1), "after_default": round(peak_rss_mb(), 1)},
    }


__all__ = ["make_images", "make_texts", "measure_files", "random_image_inputs"]
