"""Odd, broken and oversized image files through `load_image`: a result, or an error naming the file.

`FILE_KINDS` (one writer per kind of file, with what loading it gives) also seeds the corpus of
bench/reliability_inputs.py.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import tempfile
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image, ImageOps

from modeling_scot.processing_scot import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    load_image,
    max_image_pixels,
    set_max_image_pixels,
)
from modeling_scot.retrieval import DatasetImages
from tests.evaluation.mutations import mutate_bytes

WIDTH, HEIGHT = 6, 4
RED, BLUE, PINK, WHITE, BLACK, GREY = (255, 0, 0), (0, 0, 255), (255, 127, 127), (255, 255, 255), (0, 0, 0), (128,) * 3
BIG_SIDE = 10_000
"""The oversized PNG is BIG_SIDE x BIG_SIDE = 100 megapixels, above the default limit, and about 100 KB on disk."""


class FileKind(NamedTuple):
    """A kind of image file: its file name, a writer, and what `load_image` gives (a colour every pixel has,
    within `tolerance`, or a fragment of the error message)."""

    filename: str
    write: Callable[[Path], None]
    expected: tuple[int, int, int] | str
    tolerance: int = 0


def _saved(image: Image.Image, **options: Any) -> Callable[[Path], None]:
    return lambda path: image.save(path, **options)


def _animated(**options: Any) -> Callable[[Path], None]:
    """Two frames, red then blue."""
    red, blue = Image.new("RGB", (WIDTH, HEIGHT), RED), Image.new("RGB", (WIDTH, HEIGHT), BLUE)
    return lambda path: red.save(path, save_all=True, append_images=[blue], duration=100, loop=0, **options)


def _float_image(value: float) -> Image.Image:
    return Image.fromarray(np.full((HEIGHT, WIDTH), value, np.float32))


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (WIDTH, HEIGHT), 1)
    image.putpalette([255, 0, 0, 128, 128, 128])
    image.info["transparency"] = 1
    return image


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _cut(writer: Callable[[Path], None], keep: float) -> Callable[[Path], None]:
    """A file written by `writer`, cut to the fraction `keep` of its bytes."""

    def write(path: Path) -> None:
        writer(path)
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])

    return write


def _flipped(writer: Callable[[Path], None], offset: int) -> Callable[[Path], None]:
    """A file written by `writer` with the byte at `offset` inverted."""

    def write(path: Path) -> None:
        writer(path)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))

    return write


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))

FILE_KINDS: dict[str, FileKind] = {
    "png-rgb": FileKind("a.png", _saved(Image.new("RGB", (WIDTH, HEIGHT), RED)), RED),
    "jpeg-rgb": FileKind("a.jpg", _saved(Image.new("RGB", (WIDTH, HEIGHT), RED), quality=95), RED, 8),
    "jpeg-cmyk": FileKind("a.jpg", _saved(Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0)), quality=95), RED, 8),
    "tiff-cmyk": FileKind("a.tif", _saved(Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0))), RED),
    "png-grey-16bit": FileKind("a.png", _saved(Image.fromarray(np.full((HEIGHT, WIDTH), 32896, np.uint16))), GREY),
    "tiff-grey-16bit": FileKind("a.tif", _saved(Image.fromarray(np.full((HEIGHT, WIDTH), 65535, np.uint16))), WHITE),
    "tiff-int-32bit": FileKind("a.tif", _saved(Image.fromarray(np.full((HEIGHT, WIDTH), 2**30, np.int32))), GREY, 1),
    "tiff-float-in-0-1": FileKind("a.tif", _saved(_float_image(0.5)), GREY),
    "tiff-float-constant-200": FileKind("a.tiff", _saved(_float_image(200.0)), (200, 200, 200)),
    "tiff-float-all-nan": FileKind("a.tiff", _saved(_float_image(np.nan)), BLACK),
    "pfm-float": FileKind("a.pfm", _saved(_float_image(0.25)), (64, 64, 64)),
    "spider-float": FileKind("a.spi", _saved(_float_image(1.0), format="SPIDER"), WHITE),
    "tiff-lab": FileKind("a.tif", _saved(Image.new("LAB", (WIDTH, HEIGHT), (255, 128, 128))), WHITE, 2),
    "png-palette-transparent": FileKind("a.png", _saved(_palette_with_transparency()), WHITE),
    "gif-palette-transparent": FileKind("a.gif", _saved(_palette_with_transparency()), WHITE),
    "png-la-opaque": FileKind("a.png", _saved(Image.new("LA", (WIDTH, HEIGHT), (128, 255))), GREY),
    "png-la-transparent": FileKind("a.png", _saved(Image.new("LA", (WIDTH, HEIGHT), (0, 0))), WHITE),
    "png-rgba-half": FileKind("a.png", _saved(Image.new("RGBA", (WIDTH, HEIGHT), (255, 0, 0, 128))), PINK, 1),
    "gif-animated": FileKind("a.gif", _animated(), RED),
    "apng-animated": FileKind("a.png", _animated(), RED),
    "webp-animated": FileKind("a.webp", _animated(lossless=True), RED),
    "png-1bit": FileKind("a.png", _saved(Image.new("1", (WIDTH, HEIGHT), 1)), WHITE),
    "tiff-1bit": FileKind("a.tif", _saved(Image.new("1", (WIDTH, HEIGHT), 0)), BLACK),
    "bmp": FileKind("a.bmp", _saved(Image.new("RGB", (WIDTH, HEIGHT), BLUE)), BLUE),
    "ico": FileKind("a.ico", _saved(Image.new("RGBA", (16, 16), (0, 0, 255, 255)), sizes=[(16, 16)]), BLUE),
    "webp-lossless": FileKind("a.webp", _saved(Image.new("RGB", (WIDTH, HEIGHT), BLUE), lossless=True), BLUE),
    "jpeg-truncated": FileKind("a.jpg", _cut(_saved(NOISE, quality=95), 0.5), "cannot be decoded: image file is trunc"),
    "png-truncated": FileKind("a.png", _cut(_saved(NOISE), 0.5), "cannot be decoded"),
    "png-header-cut": FileKind("a.png", _cut(_saved(NOISE), 0.003), "cannot be decoded"),
    "png-corrupt-data": FileKind("a.png", _flipped(_saved(NOISE), 60), "cannot be decoded"),
    "text-named-jpg": FileKind("notes.jpg", _bytes(b"this is not an image\n"), "it holds text starting 'this is not"),
    "html-named-jpg": FileKind("page.jpg", _bytes(b"<!DOCTYPE html><html><body>404</body></html>"), "starting '<!DOC"),
    "empty-named-png": FileKind("empty.png", _bytes(b""), "is not an image Pillow can read: the file is empty"),
    "heic-photo": FileKind("photo.heic", _bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64)), "brand 'heic' (a HEIC/HEIF"),
    "zeros-named-gif": FileKind("zeros.gif", _bytes(bytes(100)), "starts with the bytes 00 00 00"),
    "folder-named-jpg": FileKind("folder.jpg", lambda path: path.mkdir(), "is not a regular file"),
}


def with_header_of(raw: bytes, donor: bytes) -> bytes:
    """`raw` with its first 16 bytes (where formats keep their signature and often the size) taken from `donor`."""
    return donor[:16] + raw[16:]


def write_kind(kind: FileKind, folder: Path) -> Path:
    """Write one file of `kind` into `folder` and return its path."""
    path = folder / kind.filename
    kind.write(path)
    return path


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def write_black_png(path: Path, side: int) -> Path:
    """An all-black 8-bit grey PNG of side x side pixels, compressed a row at a time (small in memory and on disk)."""
    compressor, row = zlib.compressobj(9), bytes(side + 1)
    pixels = b"".join([*(compressor.compress(row) for _ in range(side)), compressor.flush()])
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def big_png(tmp_path_factory) -> Path:
    return write_black_png(tmp_path_factory.mktemp("big") / "huge.png", BIG_SIDE)


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    """Every test starts from the default limit and leaves it so."""
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)
    set_max_image_pixels(None)
    yield
    set_max_image_pixels(None)


# --- every kind of file ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FILE_KINDS.values(), ids=FILE_KINDS.keys())
def test_each_kind_of_file(tmp_path, kind: FileKind):
    path = write_kind(kind, tmp_path)
    if isinstance(kind.expected, str):
        with pytest.raises(ValueError) as raised:
            load_image(path, "reference")
        assert kind.expected in str(raised.value)
        assert str(raised.value).startswith(f"reference: image file {str(path)!r}")
        return
    image = load_image(path, "reference")
    assert image.mode == "RGB"
    difference = np.abs(np.asarray(image, dtype=np.int16) - np.array(kind.expected, dtype=np.int16))
    assert difference.max() <= kind.tolerance


def test_binary_file_objects_load_like_paths(tmp_path):
    path = write_kind(FILE_KINDS["jpeg-cmyk"], tmp_path)
    with open(path, "rb") as handle:
        assert np.array_equal(np.asarray(load_image(handle)), np.asarray(load_image(path)))
    with open(write_kind(FILE_KINDS["text-named-jpg"], tmp_path), "rb") as handle:
        with pytest.raises(ValueError, match=r"image: image file '.*notes\.jpg' is not an image"):
            load_image(handle)


def test_exif_orientation_turns_the_image_upright(tmp_path):
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[:, : WIDTH // 2] = RED
    pixels[:, WIDTH // 2 :] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # the stored image must be turned 90 degrees clockwise to be upright
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    upright = np.asarray(load_image(path), dtype=np.int16)
    assert upright.shape == (WIDTH, HEIGHT, 3)
    assert np.abs(upright[0, :] - RED).max() <= 40 and np.abs(upright[-1, :] - BLUE).max() <= 40


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_broken_exif_leaves_the_pixels_usable(tmp_path, suffix):
    path = tmp_path / f"odd-exif{suffix}"
    Image.new("RGB", (WIDTH, HEIGHT), RED).save(path, exif=b"not exif at all", lossless=True)
    with Image.open(path) as image, pytest.raises(SyntaxError):
        ImageOps.exif_transpose(image)  # what Pillow makes of this EXIF block
    assert np.asarray(load_image(path))[0, 0].tolist() == list(RED)


# --- 32-bit float images (mode F) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([0.0, 0.5, 1.0], [0, 128, 255], id="in-0-1-scaled-by-255"),
        pytest.param([-3.0, 500.0, 1000.0], [0, 128, 255], id="other-range-stretched"),
        pytest.param([2.0, 3.0, 4.0], [0, 128, 255], id="hdr-stretched"),
        pytest.param([np.nan, 0.0, 10.0], [0, 0, 255], id="nan-is-black"),
        pytest.param([-np.inf, 5.0, 10.0, np.inf], [0, 0, 255, 255], id="infinities-at-the-ends"),
        pytest.param([300.0, 300.0, 300.0], [255, 255, 255], id="constant-clipped"),
        pytest.param([np.inf, np.inf, np.nan], [255, 255, 0], id="no-finite-values"),
    ],
)
def test_float_images_map_from_their_own_range(tmp_path, values, expected):
    path = tmp_path / "data.tiff"
    Image.fromarray(np.array([values], np.float32)).save(path)
    assert np.asarray(load_image(path))[0, :, 0].tolist() == expected


def test_pillow_clips_float_images_which_is_why_they_are_mapped():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(unit.convert("L")).tolist() == [[0, 0, 1]]  # Pillow: a [0, 1] image turns black
    assert np.asarray(load_image(unit))[0, :, 0].tolist() == [0, 128, 255]


def test_float_arrays_still_must_lie_in_0_1():
    assert np.asarray(load_image(np.full((HEIGHT, WIDTH), 0.5, np.float32)))[0, 0].tolist() == list(GREY)
    with pytest.raises(ValueError, match=r"reference has float values in \[0, 255\].*divide 0\.\.255 values by 255"):
        load_image(np.linspace(0, 255, WIDTH * HEIGHT).reshape(HEIGHT, WIDTH), "reference")


# --- pixel limit -------------------------------------------------------------------------------------------------


def test_default_limit_is_pillows():
    assert DEFAULT_MAX_IMAGE_PIXELS == 89_478_485 == max_image_pixels()


def test_huge_png_is_refused_from_its_header(big_png):
    assert big_png.stat().st_size < 300_000
    started = time.perf_counter()
    with pytest.raises(ValueError) as raised:
        load_image(big_png, "gallery image 'huge.png'")
    assert time.perf_counter() - started < 0.5
    message = str(raised.value)
    prefix = f"gallery image 'huge.png': image file {str(big_png)!r} is 10000x10000 = 100,000,000 pixels"
    assert message.startswith(prefix)
    assert "more than the limit of 89,478,485 pixels" in message and MAX_IMAGE_PIXELS_ENV in message


def _pillow_images_made() -> int:
    """How many images Pillow's C core has allocated pixel memory for in this process."""
    return Image.core.get_stats()["new_count"]


def test_refusing_a_huge_png_allocates_no_pixels(tmp_path, big_png):
    made, tracemalloc_was_on = _pillow_images_made(), tracemalloc.is_tracing()
    tracemalloc.start()
    with pytest.raises(ValueError, match="more than the limit"):
        load_image(big_png)
    peak_python_bytes = tracemalloc.get_traced_memory()[1]
    if not tracemalloc_was_on:
        tracemalloc.stop()
    assert _pillow_images_made() == made and peak_python_bytes < 1_000_000
    load_image(write_black_png(tmp_path / "small.png", 500))  # the counter does see a decode
    assert _pillow_images_made() > made


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # from Pillow's own Image.open here
def test_pillow_open_image_is_refused_before_decoding(big_png):
    with Image.open(big_png) as lazy:
        with pytest.raises(ValueError, match=r"image \(read from '.*huge\.png'\) is 10000x10000"):
            load_image(lazy)
        assert lazy.tile  # still to be decoded


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda: np.broadcast_to(np.zeros(1, np.uint8), (BIG_SIDE, BIG_SIDE)), id="numpy"),
        pytest.param(lambda: torch.zeros(1, dtype=torch.uint8).expand(3, BIG_SIDE, BIG_SIDE), id="tensor-CHW"),
        pytest.param(lambda: torch.zeros(1, dtype=torch.bfloat16).expand(BIG_SIDE, BIG_SIDE, 3), id="tensor-bf16"),
        pytest.param(lambda: Image.new("1", (BIG_SIDE, BIG_SIDE)), id="pil"),
    ],
)
def test_huge_images_in_memory_are_refused(factory):
    with pytest.raises(ValueError, match=r"images\[0\] is 10000x10000 = 100,000,000 pixels, more than the limit"):
        load_image(factory(), "images[0]")


def test_limit_from_environment_function_and_argument(tmp_path, monkeypatch):
    path = write_kind(FILE_KINDS["png-rgb"], tmp_path)  # 6 x 4 = 24 pixels
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "23")
    with pytest.raises(ValueError, match=r"a\.png' is 6x4 = 24 pixels, more than the limit of 23 pixels"):
        load_image(path)
    assert load_image(path, max_pixels=24).size == (WIDTH, HEIGHT)
    set_max_image_pixels(24)
    assert max_image_pixels() == 24 and load_image(path).size == (WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="more than the limit of 10 pixels"):
        load_image(path, max_pixels=10)
    set_max_image_pixels(None)
    assert max_image_pixels() == 23


def test_limit_can_be_raised_above_pillows_own(tmp_path, monkeypatch):
    """Pillow's global limit neither warns nor refuses inside load_image, and is left as it was."""
    path = write_kind(FILE_KINDS["png-rgb"], tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(path)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(write_black_png(tmp_path / "b.png", 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).size == (WIDTH, HEIGHT)
        assert load_image(tmp_path / "b.png").size == (8, 8)
    assert Image.MAX_IMAGE_PIXELS == 15


@pytest.mark.parametrize("value", ["many", "0", "-5", "1.5", "1e9"])
def test_bad_environment_limit_is_named(tmp_path, monkeypatch, value):
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, value)
    with pytest.raises(ValueError, match=rf"\${MAX_IMAGE_PIXELS_ENV} must be a positive whole number of pixels"):
        load_image(np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "ten"])
def test_bad_limit_arguments_are_refused(value):
    with pytest.raises(ValueError, match="must be a positive whole number of pixels"):
        set_max_image_pixels(value)
    with pytest.raises(ValueError, match=r"max_pixels must be a positive whole number"):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=value)


def test_limit_lives_in_load_image_for_every_caller(tmp_path, tiny_processor):
    path = write_kind(FILE_KINDS["png-rgb"], tmp_path)
    set_max_image_pixels(20)
    with pytest.raises(ValueError, match=r"images\[1\]: image file .*a\.png' is 6x4 = 24 pixels"):
        tiny_processor(images=[np.zeros((4, 5), np.uint8), path])


def test_unreadable_file_is_named(tmp_path):
    path = write_kind(FILE_KINDS["png-rgb"], tmp_path)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as a user who can read any file")
    with pytest.raises(ValueError, match=r"a\.png' cannot be read: Permission denied"):
        load_image(path)


# --- dataset image columns ---------------------------------------------------------------------------------------


def _image_column(values: list) -> DatasetImages:
    features = Features({"name": Value("string"), "picture": ImageFeature()})
    names = [f"item-{index}" for index in range(len(values))]
    return DatasetImages(Dataset.from_dict({"name": names, "picture": values}, features=features), "picture", "name")


def test_dataset_images_are_decoded_by_load_image(tmp_path, big_png):
    good = write_kind(FILE_KINDS["jpeg-cmyk"], tmp_path)
    broken = write_kind(FILE_KINDS["html-named-jpg"], tmp_path)
    source = _image_column(
        [{"bytes": good.read_bytes(), "path": None}, {"bytes": broken.read_bytes(), "path": None},
         {"bytes": big_png.read_bytes(), "path": None}, str(good), None],
    )
    assert np.array_equal(np.asarray(source.image(0)), np.asarray(load_image(good)))
    with pytest.raises(ValueError, match=r"^gallery image 'item-1' is not an image Pillow can read: it holds text"):
        source.image(1)
    made = _pillow_images_made()
    with pytest.raises(ValueError, match=r"^gallery image 'item-2' is 10000x10000 = 100,000,000 pixels, more than"):
        source.image(2)
    assert _pillow_images_made() == made
    assert source.image(3).size == (WIDTH, HEIGHT)
    with pytest.raises(ValueError, match=r"^gallery image 'item-4' has unsupported type NoneType"):
        source.image(4)


def test_dataset_content_key_is_that_of_the_decoded_column(tmp_path):
    features = Features({"picture": ImageFeature()})
    dataset = Dataset.from_dict({"picture": [Image.new("RGB", (WIDTH, HEIGHT))]}, features=features)
    expected = json.dumps([dataset.select_columns(["picture"])._fingerprint, "picture", None])
    assert DatasetImages(dataset, "picture").content_key() == expected  # embedding caches stay valid


# --- damaged files -----------------------------------------------------------------------------------------------


@functools.cache
def _readable_originals() -> dict[str, bytes]:
    """The bytes of every kind of file that loads, written once."""
    with tempfile.TemporaryDirectory() as folder:
        return {
            kind_id: write_kind(kind, Path(folder)).read_bytes()
            for kind_id, kind in FILE_KINDS.items()
            if not isinstance(kind.expected, str)
        }


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_files_load_or_fail_naming_the_file(tmp_path, data):
    def choose(options):
        return data.draw(st.sampled_from(options if isinstance(options, (range, list, tuple)) else list(options)))

    originals = _readable_originals()
    raw = originals[choose(sorted(originals))]
    if choose(("bytes", "bytes", "header")) == "header":
        damaged = with_header_of(raw, originals[choose(sorted(originals))])
    else:
        damaged = mutate_bytes(raw, choose)
    path = tmp_path / "damaged.img"
    path.write_bytes(damaged)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = load_image(path, "reference")
    except ValueError as error:
        assert str(error).startswith(f"reference: image file {str(path)!r} "), str(error)
        return
    assert image.mode == "RGB" and min(image.size) > 0
