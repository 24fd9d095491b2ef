"""Processor pairing an image processor with a tokenizer, plus robust RGB image loading."""

from __future__ import annotations

import errno
import os
import threading
import warnings
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import BatchFeature, ProcessorMixin

from .image_batches import BatchedImagePreprocessor

ImageInput = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike | BinaryIO

TEXT_PADDING_CHOICES = ("longest", "max_length")
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""The largest image (width x height) loaded by default: Pillow's own default, about 0.25 GiB as 24-bit RGB."""
MAX_IMAGE_PIXELS_ENV = "SCOT_MAX_IMAGE_PIXELS"
_CHANNEL_COUNTS = (1, 3, 4)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_UINT16_MAX = 65535
_INT32_MAX = 2**31 - 1
_FLOAT_TOLERANCE = 1e-6
_HEAD_BYTES = 64
_CONTROL_TO_SPACE = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0))}
_ACCEPTED = (
    "a PIL image, a numpy array (HxW, HxWx1, HxWx3 or HxWx4; uint8, uint16, bool or float in [0, 1]), "
    "a torch tensor (CHW or HWC, same dtypes), an image file path or a binary file object"
)
_max_pixels_setting: int | None = None
_pillow_limit_lock = threading.Lock()


# --- pixel limit -------------------------------------------------------------------------------------------------


def _valid_limit(value: Any, source: str) -> int:
    """`value` as a positive pixel count, or a ValueError naming where it came from."""
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if isinstance(value, bool) or limit < 1 or (isinstance(value, float) and value != limit):
        raise ValueError(f"{source} must be a positive whole number of pixels, got {value!r}")
    return limit


def set_max_image_pixels(limit: int | None) -> None:
    """Set the largest image (width x height, in pixels) `load_image` accepts in this process; None goes back to
    ``$SCOT_MAX_IMAGE_PIXELS`` or `DEFAULT_MAX_IMAGE_PIXELS`."""
    global _max_pixels_setting
    _max_pixels_setting = None if limit is None else _valid_limit(limit, "set_max_image_pixels(limit)")


def max_image_pixels() -> int:
    """The pixel limit in force: `set_max_image_pixels`, else ``$SCOT_MAX_IMAGE_PIXELS``, else the default."""
    if _max_pixels_setting is not None:
        return _max_pixels_setting
    from_env = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    return _valid_limit(from_env, f"${MAX_IMAGE_PIXELS_ENV}") if from_env else DEFAULT_MAX_IMAGE_PIXELS


def _check_pixels(width: int, height: int, label: str, limit: int) -> None:
    """Refuse an image of more than `limit` pixels, before anything is decoded or copied."""
    if width * height > limit:
        raise ValueError(
            f"{label} is {width}x{height} = {width * height:,} pixels, more than the limit of {limit:,} pixels "
            f"(a guard against decompression bombs); to accept larger images set ${MAX_IMAGE_PIXELS_ENV}, "
            "call set_max_image_pixels() or pass load_image(..., max_pixels=...)"
        )


# --- pixel values ------------------------------------------------------------------------------------------------


def _rescale_to_uint8(values: np.ndarray, max_value: int) -> np.ndarray:
    """Linearly map integers in ``0..max_value`` to ``0..255``."""
    scaled = np.clip(values.astype(np.float64), 0, max_value) * (255.0 / max_value)
    return np.round(scaled).astype(np.uint8)


def _float_to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """Map floats in [0, 1] to ``0..255``; other ranges are rejected rather than guessed."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; float arrays must lie in [0, 1]")
    low, high = float(values.min()), float(values.max())
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise ValueError(
            f"{name} has float values in [{low:g}, {high:g}]; float arrays must lie in [0, 1] "
            "(divide 0..255 values by 255, or pass them as uint8)"
        )
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _float_image_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a 32-bit float image (PIL mode "F": float TIFF, PFM, Spider) to ``0..255`` from its finite values.

    Values within [0, 1] are scaled by 255, like float arrays; any other range is stretched from its finite
    minimum to its maximum, and a constant image keeps its value clipped to 0..255. NaN becomes 0, +inf 255 and
    -inf 0, as in Pillow's own ``convert("L")``, which instead clips every value to 0..255 (turning a [0, 1]
    image black and saturating a high-range one).
    """
    finite = np.isfinite(values)
    low, high = 0.0, 0.0
    if finite.any():
        low, high = float(values.min(where=finite, initial=np.inf)), float(values.max(where=finite, initial=-np.inf))
    if low >= 0.0 and high <= 1.0:
        scaled = values * np.float32(255.0)
    elif high > low:
        scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    else:
        scaled = values.copy()
    scaled[np.isnan(scaled)] = 0.0
    return np.round(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


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


# --- arrays and tensors ------------------------------------------------------------------------------------------


def _check_shape(shape: tuple[int, ...], name: str, kind: str, channel_dims: tuple[int, ...]) -> None:
    """Reject empty inputs and anything that is not one grey, RGB or RGBA image with channels at `channel_dims`."""
    single_image = len(shape) == 2 or (len(shape) == 3 and any(shape[dim] in _CHANNEL_COUNTS for dim in channel_dims))
    if not single_image or 0 in shape:
        raise ValueError(f"{name} is a {kind} with unsupported shape {tuple(shape)}; expected {_ACCEPTED}")


def _array_to_rgb(array: np.ndarray, name: str, limit: int) -> Image.Image:
    """Convert an HxW, HxWx1, HxWx3 or HxWx4 array to an RGB image (alpha composited on white)."""
    _check_shape(array.shape, name, "numpy array", channel_dims=(2,))
    _check_pixels(array.shape[1], array.shape[0], name, limit)
    pixels = np.ascontiguousarray(_to_uint8(array, name))
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return _pil_to_rgb(Image.fromarray(pixels), name)


def _tensor_to_array(tensor: torch.Tensor, name: str, limit: int) -> np.ndarray:
    """Return a HxW, CHW or HWC tensor as an HxW(xC) array; a layout readable both ways is rejected."""
    shape = tuple(tensor.shape)
    _check_shape(shape, name, "torch tensor", channel_dims=(0, 2))
    if len(shape) == 3 and shape[0] in _CHANNEL_COUNTS and shape[2] in _CHANNEL_COUNTS:
        raise ValueError(
            f"{name} is a torch tensor with ambiguous shape {shape} (could be CHW or HWC); "
            "pass a PIL image or a numpy HxWxC array instead"
        )
    channels_first = len(shape) == 3 and shape[0] in _CHANNEL_COUNTS
    height, width = shape[1:3] if channels_first else shape[:2]
    _check_pixels(width, height, name, limit)
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    if channels_first:
        tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


# --- PIL images --------------------------------------------------------------------------------------------------


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten an image with transparency onto a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to RGB, scaling 16/32-bit grey by its bit depth and flattening alpha on white.

    Mode "I" counts as 16-bit when every value fits in 0..65535 (older Pillow opens 16-bit PNGs as "I"),
    otherwise as 32-bit; mode "F" is mapped from its own range (see `_float_image_to_uint8`).
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
        return Image.fromarray(_float_image_to_uint8(np.asarray(image))).convert("RGB")
    try:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            return _composite_on_white(image)
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(f"{name} has PIL mode {image.mode!r}, which cannot be converted to RGB") from error


def _decoded(image: Image.Image, label: str, limit: int) -> Image.Image:
    """Check the size of a (possibly not yet decoded) PIL image against `limit`, then decode its pixels."""
    _check_pixels(*image.size, label, limit)
    try:
        image.load()
    except Exception as error:  # Pillow's decoders raise many exception types on corrupt data.
        raise ValueError(f"{label} cannot be decoded: {error}") from error
    return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; an unreadable EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - broken metadata must not make readable pixels unusable
        return image


def _describe_head(head: bytes) -> str:
    """Say what a file that is not an image starts with."""
    if not head:
        return "the file is empty"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("latin-1")
        return f"it is an ISO media file of brand {brand!r} (a HEIC/HEIF photo or a video): convert it to JPEG or PNG"
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
        return f"it holds text starting {head.decode('ascii')[:40]!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _open_header(source: BinaryIO, label: str) -> Image.Image:
    """Identify an image file and read its header (size, mode) without decoding any pixels.

    Pillow's own decompression-bomb check is switched off while the header is read: the caller applies the
    configured limit (`max_image_pixels`) instead, with a message that says how to raise it.
    """
    head = source.read(_HEAD_BYTES)
    source.seek(-len(head), os.SEEK_CUR)
    with _pillow_limit_lock:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(source)
        except Image.UnidentifiedImageError:
            raise ValueError(f"{label} is not an image Pillow can read: {_describe_head(head)}") from None
        except Exception as error:  # header parsers raise many exception types on corrupt data
            raise ValueError(f"{label} cannot be decoded: {error}") from error
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def _read_image(source: BinaryIO, label: str, limit: int) -> Image.Image:
    """Decode the first frame of an image file object as RGB, upright, refusing one over `limit` pixels."""
    image = _open_header(source, label)
    return _pil_to_rgb(_upright(_decoded(image, label, limit)), label)


def _read_file(path: str, name: str, limit: int) -> Image.Image:
    """Decode an image file; a missing path is a FileNotFoundError, every other problem a ValueError naming it."""
    label = f"{name}: image file {path!r}"
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{name}: image file not found", path)
    if not os.path.isfile(path):
        raise ValueError(f"{label} is not a regular file")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ValueError(f"{label} cannot be read: {error.strerror or error}") from error
    with handle:
        return _read_image(handle, label, limit)


def load_image(image: ImageInput, name: str = "image", *, max_pixels: int | None = None) -> Image.Image:
    """Load a PIL image, numpy array, torch tensor, file path or binary file object as an RGB PIL image.

    Files: the first frame, turned upright by its EXIF orientation. Alpha is composited on white, 16-bit data
    is scaled to 8 bits, float arrays must lie in [0, 1] and 32-bit float images are mapped from their own
    range. An image of more than `max_pixels` pixels (default: `max_image_pixels()`) is refused from its size
    alone, before decoding. `name` labels the input in error messages.
    """
    limit = max_image_pixels() if max_pixels is None else _valid_limit(max_pixels, "max_pixels")
    if isinstance(image, (str, os.PathLike)):
        return _read_file(os.fspath(image), name, limit)
    if isinstance(image, Image.Image):
        source = getattr(image, "filename", "")
        label = f"{name} (read from {source!r})" if source else name
        return _pil_to_rgb(_decoded(image, label, limit), label)
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(_tensor_to_array(image, name, limit), name, limit)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, name, limit)
    if callable(getattr(image, "read", None)) and callable(getattr(image, "seek", None)):
        source = getattr(image, "name", "")
        return _read_image(image, f"{name}: image file {source!r}" if source else name, limit)
    raise ValueError(f"{name} has unsupported type {type(image).__name__}; expected {_ACCEPTED}")


def _as_image_list(images: ImageInput | list[ImageInput] | tuple[ImageInput, ...]) -> list[Image.Image]:
    """Load one image or a list of images as RGB PIL images."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images must not be an empty list")
        return [load_image(image, f"images[{index}]") for index, image in enumerate(images)]
    return [load_image(images, "images")]


# --- text --------------------------------------------------------------------------------------------------------


def _clean_text(text: str, label: str) -> str:
    """Refuse text that is not valid Unicode; control characters become spaces and blank text becomes ""."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{label} holds {text[error.start]!r} at position {error.start}, which is not a Unicode character: "
            "it comes from bytes that are not UTF-8 (e.g. a command line or file in another encoding); "
            "pass the text as UTF-8"
        ) from None
    text = text.translate(_CONTROL_TO_SPACE)
    return text if text.strip() else ""


def _as_text_list(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Validate that `text` is a string or a non-empty list of strings (empty strings allowed) and clean each."""
    if isinstance(text, str):
        return [_clean_text(text, "text")]
    if not isinstance(text, (list, tuple)):
        raise ValueError(f"text must be a str or a list of str, got {type(text).__name__}")
    if not text:
        raise ValueError("text must not be an empty list")
    for index, item in enumerate(text):
        if not isinstance(item, str):
            raise ValueError(f"text[{index}] must be a str, got {type(item).__name__}")
    return [_clean_text(item, f"text[{index}]") for index, item in enumerate(text)]


class ScotProcessor(ProcessorMixin):
    """Prepares reference/gallery images and modification texts for SCOT models.

    Images of the common image processors (CLIP, BLIP, SigLIP) are resized as the image processor resizes them and
    then cropped and normalised as one batch (`BatchedImagePreprocessor`: the same pixels, faster); others, and calls
    with image-processor arguments, go through the image processor. Text is always truncated to the tokenizer's
    `model_max_length` (with a warning when that cuts a text) and
    padded with `text_padding` ("longest", or "max_length" for SigLIP-style text towers); `text_padding` is saved
    in processor_config.json. Empty and blank texts are allowed and encode as the empty text (for a modification
    text: no change asked for); control characters count as spaces; text that is not valid Unicode (lone
    surrogates, as Python makes from bytes that are not UTF-8) is a ValueError naming it.
    """

    def __init__(self, image_processor: Any, tokenizer: Any, text_padding: str = "longest") -> None:
        if text_padding not in TEXT_PADDING_CHOICES:
            raise ValueError(f"text_padding must be one of {TEXT_PADDING_CHOICES}, got {text_padding!r}")
        self.text_padding = text_padding
        super().__init__(image_processor, tokenizer)

    def _warn_if_truncated(self, texts: list[str], attention_mask: Any) -> None:
        """Warn when a text was longer than the tokenizer's maximum length (only full rows can be). The message
        is the same for every call, so Python shows it once per calling line."""
        max_length = self.tokenizer.model_max_length
        lengths = np.asarray(attention_mask).sum(axis=-1)
        full_rows = [text for text, length in zip(texts, lengths) if length >= max_length]
        untruncated = self.tokenizer(full_rows, truncation=False, verbose=False)["input_ids"] if full_rows else []
        if any(len(ids) > max_length for ids in untruncated):
            warnings.warn(
                f"text longer than the tokenizer's {max_length} tokens was truncated: the text encoder sees only "
                f"its first {max_length} tokens",
                UserWarning,
                stacklevel=3,
            )

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
            texts = _as_text_list(text)
            features.update(
                self.tokenizer(
                    texts,
                    padding=self.text_padding,
                    truncation=True,
                    return_attention_mask=True,
                    return_token_type_ids=False,
                    return_tensors=return_tensors,
                )
            )
            self._warn_if_truncated(texts, features["attention_mask"])
        if images is not None:
            loaded = _as_image_list(images)
            if not kwargs and return_tensors == "pt" and BatchedImagePreprocessor.supports(self.image_processor):
                features["pixel_values"] = BatchedImagePreprocessor(self.image_processor).pixel_values(loaded)
            else:
                features.update(self.image_processor(loaded, return_tensors=return_tensors, **kwargs))
        return BatchFeature(features, tensor_type=return_tensors)
