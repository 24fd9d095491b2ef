"""Batched image preprocessing for the common image processors (CLIP, BLIP, SigLIP): the processor's own resize
(Pillow, its resampling filter and output size), then center crop, rescale and normalise once for the whole batch in
torch, instead of image by image through NumPy. The pixels equal the processor's to float32 rounding (tested); any
setting outside that common form (padding, a longest edge, SigLIP 2's patches) goes through the processor itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

SIMPLE_PROCESSORS = ("CLIPImageProcessor", "BlipImageProcessor", "SiglipImageProcessor")
"""Image processor classes (and their Pillow backends, `...Pil`) whose steps this module reproduces."""


def _setting(image_processor: Any, name: str) -> Any:
    return getattr(image_processor, name, None)


def _size(value: Any) -> dict[str, int]:
    """A processor size setting as a plain dict of its set entries."""
    entries = value.items() if isinstance(value, dict) else vars(value).items() if value is not None else ()
    return {key: entry for key, entry in entries if entry is not None}


def _resized_shape(width: int, height: int, size: dict[str, int]) -> tuple[int, int]:
    """(width, height) after the processor's resize: exact `height` x `width`, or the short side scaled to
    `shortest_edge` with the long side truncated, as transformers computes it."""
    if "shortest_edge" not in size:
        return size["width"], size["height"]
    short, long = sorted((width, height))
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


class BatchedImagePreprocessor:
    """The steps of a simple image processor (`supports`) run on a batch: `pixel_values(images)` -> (B, 3, H, W)."""

    def __init__(self, image_processor: Any):
        if not self.supports(image_processor):
            raise ValueError(f"{type(image_processor).__name__} has settings this preprocessor does not reproduce")
        self.size = _size(_setting(image_processor, "size"))
        self.crop = _size(_setting(image_processor, "crop_size")) if image_processor.do_center_crop else None
        self.resample = Image.Resampling(int(_setting(image_processor, "resample")))
        self.scale = float(image_processor.rescale_factor) if image_processor.do_rescale else 1.0
        normalize = image_processor.do_normalize
        self.mean = torch.tensor(image_processor.image_mean if normalize else [0.0] * 3).view(1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std if normalize else [1.0] * 3).view(1, 3, 1, 1)

    @staticmethod
    def supports(image_processor: Any) -> bool:
        """Whether `image_processor` is a CLIP, BLIP or SigLIP image processor with resize, optional center crop
        (inside every resized image), rescale and normalise only, making images of one size."""
        name = type(image_processor).__name__.removesuffix("Pil")
        if name not in SIMPLE_PROCESSORS or not _setting(image_processor, "do_resize"):
            return False
        if any(_setting(image_processor, flag) for flag in ("do_pad", "do_reduce_labels")):
            return False
        size, crop = _size(_setting(image_processor, "size")), _size(_setting(image_processor, "crop_size"))
        if _setting(image_processor, "do_center_crop"):
            crops = set(crop) == {"height", "width"}
        else:  # without a crop only an exact resize gives one output size
            crops = set(size) == {"height", "width"}
        resizes = set(size) in ({"shortest_edge"}, {"height", "width"})
        if resizes and crops and _setting(image_processor, "do_center_crop"):  # a crop inside every resized image
            smallest = size.get("shortest_edge") or min(size["height"], size["width"])
            crops = max(crop["height"], crop["width"]) <= smallest
        means = all(
            not _setting(image_processor, "do_normalize") or len(np.atleast_1d(_setting(image_processor, name))) == 3
            for name in ("image_mean", "image_std")
        )
        return resizes and crops and means and _setting(image_processor, "resample") is not None

    def _resized(self, image: Image.Image) -> np.ndarray:
        """(H, W, 3) uint8: resized as the processor resizes, then center-cropped."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        image = image.resize(_resized_shape(*image.size, self.size), resample=self.resample)
        pixels = np.asarray(image)
        if self.crop is None:
            return pixels
        height, width = pixels.shape[:2]
        top, left = (height - self.crop["height"]) // 2, (width - self.crop["width"]) // 2
        return pixels[top : top + self.crop["height"], left : left + self.crop["width"]]

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 3, H, W) float32 pixel values of RGB `images`, all of one output size."""
        batch = torch.from_numpy(np.stack([self._resized(image) for image in images])).permute(0, 3, 1, 2)
        return (batch.float() * self.scale - self.mean) / self.std


__all__ = ["BatchedImagePreprocessor", "SIMPLE_PROCESSORS"]
