"""Processor pairing an image processor with a tokenizer, plus robust RGB image loading."""

from __future__ import annotations

import errno
import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import BatchFeature, ProcessorMixin

ImageInput = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike

TEXT_PADDING_CHOICES = ("longest", "max_length")
_CHANNEL_COUNTS = (1, 3, 4)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_UINT16_MAX = 65535
_INT32_MAX = 2**31 - 1
_FLOAT_TOLERANCE = 1e-6
_ACCEPTED = (
    "a PIL image, a numpy array (HxW, HxWx1, HxWx3 or HxWx4; uint8, uint16, bool or float in [0, 1]), "
    "a torch tensor (CHW or HWC, same dtypes) or an image file path"
)


def _rescale_to_uint8(values: np.ndarray, max_value: int) -> np.ndarray:
    """Linearly map integers in ``0..max_value`` to ``0..255``."""
    scaled = np.clip(values.astype(np.float64), 0, max_value) * (255.0 / max_value)
    return np.round(scaled).astype(np.uint8)


def _float_to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """Map floats in [0, 1] to ``0..255``; other ranges are rejected rather than guessed."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; float images must lie in [0, 1]")
    low, high = float(values.min()), float(values.max())
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise ValueError(f"{name} has float values in [{low:g}, {high:g}]; float images must lie in [0, 1]")
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """Convert bool, uint8, uint16 (either byte order) or float pixel values to uint8."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == "b":
        return values.astype(np.uint8) * 255
    if kind == "u" and size == 1:
        return values
    if kind == "u" and size == 2:
        return _rescale_to_uint8(values, _UINT16_MAX)
    if kind == "f":
        return _float_to_uint8(values, name)
    raise ValueError(f"{name} has unsupported dtype {values.dtype}; expected {_ACCEPTED}")


def _check_shape(shape: tuple[int, ...], name: str, kind: str, channel_dims: tuple[int, ...]) -> None:
    """Reject empty inputs and anything that is not one grey, RGB or RGBA image with channels at `channel_dims`."""
    single_image = len(shape) == 2 or (len(shape) == 3 and any(shape[dim] in _CHANNEL_COUNTS for dim in channel_dims))
    if not single_image or 0 in shape:
        raise ValueError(f"{name} is a {kind} with unsupported shape {tuple(shape)}; expected {_ACCEPTED}")


def _array_to_rgb(array: np.ndarray, name: str) -> Image.Image:
    """Convert an HxW, HxWx1, HxWx3 or HxWx4 array to an RGB image (alpha composited on white)."""
    _check_shape(array.shape, name, "numpy array", channel_dims=(2,))
    pixels = np.ascontiguousarray(_to_uint8(array, name))
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return _pil_to_rgb(Image.fromarray(pixels), name)


def _tensor_to_array(tensor: torch.Tensor, name: str) -> np.ndarray:
    """Return a HxW, CHW or HWC tensor as an HxW(xC) array; a layout readable both ways is rejected."""
    shape = tuple(tensor.shape)
    _check_shape(shape, name, "torch tensor", channel_dims=(0, 2))
    if len(shape) == 3 and shape[0] in _CHANNEL_COUNTS and shape[2] in _CHANNEL_COUNTS:
        raise ValueError(
            f"{name} is a torch tensor with ambiguous shape {shape} (could be CHW or HWC); "
            "pass a PIL image or a numpy HxWxC array instead"
        )
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    if len(shape) == 3 and shape[0] in _CHANNEL_COUNTS:
        tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten an image with transparency onto a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to RGB, scaling 16/32-bit grey by its bit depth and flattening alpha on white.

    Mode "I" counts as 16-bit when every value fits in 0..65535 (older Pillow opens 16-bit PNGs as "I"),
    otherwise as 32-bit; mode "F" must lie in [0, 1] like float arrays.
    """
    if 0 in image.size:
        raise ValueError(f"{name} is an empty PIL image of size {image.size}; expected {_ACCEPTED}")
    if image.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(_rescale_to_uint8(np.asarray(image), _UINT16_MAX)).convert("RGB")
    if image.mode == "I":
        values = np.asarray(image)
        max_value = _UINT16_MAX if values.max() <= _UINT16_MAX else _INT32_MAX
        return Image.fromarray(_rescale_to_uint8(values, max_value)).convert("RGB")
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image), name)
    try:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            return _composite_on_white(image)
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(f"{name} has PIL mode {image.mode!r}, which cannot be converted to RGB") from error


def _decode_file(path: str, name: str) -> Image.Image:
    """Fully decode an image file with PIL, turning decoder failures into a ValueError naming the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, f"{name}: image file not found", path)
    with open(path, "rb") as handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                image.load()
                return ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ValueError(
                f"{name}: image file {path!r} exceeds Pillow's pixel limit (possible decompression bomb): {error}"
            ) from error
        except Exception as error:  # Pillow's decoders raise many exception types on corrupt data.
            raise ValueError(f"{name}: image file {path!r} cannot be decoded: {error}") from error


def load_image(image: ImageInput, name: str = "image") -> Image.Image:
    """Load a PIL image, numpy array, torch tensor or file path as an RGB PIL image.

    Alpha is composited on white, 16-bit data is scaled to 8 bits and float data must lie in [0, 1].
    `name` labels the input in error messages.
    """
    if isinstance(image, (str, os.PathLike)):
        return _pil_to_rgb(_decode_file(os.fspath(image), name), name)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, name)
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(_tensor_to_array(image, name), name)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, name)
    raise ValueError(f"{name} has unsupported type {type(image).__name__}; expected {_ACCEPTED}")


def _as_image_list(images: ImageInput | list[ImageInput] | tuple[ImageInput, ...]) -> list[Image.Image]:
    """Load one image or a list of images as RGB PIL images."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images must not be an empty list")
        return [load_image(image, f"images[{index}]") for index, image in enumerate(images)]
    return [load_image(images, "images")]


def _as_text_list(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Validate that `text` is a string or a non-empty list of strings (empty strings allowed)."""
    if isinstance(text, str):
        return [text]
    if not isinstance(text, (list, tuple)):
        raise ValueError(f"text must be a str or a list of str, got {type(text).__name__}")
    if not text:
        raise ValueError("text must not be an empty list")
    for index, item in enumerate(text):
        if not isinstance(item, str):
            raise ValueError(f"text[{index}] must be a str, got {type(item).__name__}")
    return list(text)


class ScotProcessor(ProcessorMixin):
    """Prepares reference/gallery images and modification texts for SCOT models.

    Text is always truncated to the tokenizer's `model_max_length` and padded with `text_padding`
    ("longest", or "max_length" for SigLIP-style text towers); `text_padding` is saved in processor_config.json.
    """

    def __init__(self, image_processor: Any, tokenizer: Any, text_padding: str = "longest") -> None:
        if text_padding not in TEXT_PADDING_CHOICES:
            raise ValueError(f"text_padding must be one of {TEXT_PADDING_CHOICES}, got {text_padding!r}")
        self.text_padding = text_padding
        super().__init__(image_processor, tokenizer)

    def __call__(
        self,
        images: ImageInput | list[ImageInput] | None = None,
        text: str | list[str] | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenise `text` and preprocess `images` (one item or a list); `kwargs` go to the image processor."""
        if images is None and text is None:
            raise ValueError("ScotProcessor needs `images`, `text` or both")
        if kwargs and images is None:
            raise ValueError(f"image processor arguments {sorted(kwargs)} were given without images")
        features: dict[str, Any] = {}
        if text is not None:
            features.update(
                self.tokenizer(
                    _as_text_list(text),
                    padding=self.text_padding,
                    truncation=True,
                    return_attention_mask=True,
                    return_token_type_ids=False,
                    return_tensors=return_tensors,
                )
            )
        if images is not None:
            features.update(self.image_processor(_as_image_list(images), return_tensors=return_tensors, **kwargs))
        return BatchFeature(features, tensor_type=return_tensors)
