"""Tests for the word-level tokenizer, image loading and ScotProcessor."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, Siglip2ImageProcessor, SiglipImageProcessor

from modeling_scot.processing_scot import ScotProcessor, load_image
from modeling_scot.word_tokenizer import build_word_level_tokenizer

WORDS = ["A", "red", "Dress", "with", "long", "sleeves", "red", "shirt", ",", "."]
MAX_LENGTH = 8
WIDTH, HEIGHT = 6, 5
RED = (255, 0, 0)
WHITE = (255, 255, 255)
GREY = (128, 128, 128)
PINK = (255, 127, 127)


@pytest.fixture()
def tokenizer():
    return build_word_level_tokenizer(WORDS, model_max_length=MAX_LENGTH)


@pytest.fixture()
def image_processor():
    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.fixture()
def processor(image_processor, tokenizer):
    return ScotProcessor(image_processor, tokenizer)


# --- tokenizer ---------------------------------------------------------------------------------------------------


def test_vocabulary_order_is_deterministic(tokenizer):
    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab, key=vocab.get)
    words = ["a", "red", "dress", "with", "long", "sleeves", "shirt", ",", "."]
    assert ordered == ["<pad>", "<unk>", "<bos>", *words, "<eos>"]
    assert build_word_level_tokenizer(WORDS).get_vocab() == vocab


def test_eos_is_largest_id_and_differs_from_pad(tokenizer):
    vocab_size = len(tokenizer.get_vocab())
    assert tokenizer.eos_token_id == vocab_size - 1 == max(tokenizer.get_vocab().values())
    assert tokenizer.pad_token_id == 0
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_empty_string_encodes_to_bos_eos(tokenizer):
    assert tokenizer("")["input_ids"] == [tokenizer.bos_token_id, tokenizer.eos_token_id]


def test_lowercase_punctuation_and_unknown_words(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("RED dress,with zebra")["input_ids"])
    assert tokens == ["<bos>", "red", "dress", ",", "with", "<unk>", "<eos>"]


def test_special_token_text_is_not_a_special_token(tokenizer):
    ids = tokenizer("red <eos> <pad>")["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 1
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.pad_token_id not in ids


def test_truncation_keeps_eos(tokenizer):
    ids = tokenizer("a red dress with long sleeves and a red shirt", truncation=True)["input_ids"]
    assert len(ids) == MAX_LENGTH
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id


def test_batch_pads_with_pad_id_and_zero_mask(tokenizer):
    batch = tokenizer(["red", "a red dress"], padding="longest", truncation=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 5)
    assert ids[0, 3:].tolist() == [tokenizer.pad_token_id] * 2
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert (ids == tokenizer.eos_token_id).int().argmax(dim=-1).tolist() == [2, 4]


def test_tokenizer_round_trip(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = ["", "A red dress, with long sleeves.", "zebra <eos>", "a red dress with long sleeves and a red shirt"]
    expected = tokenizer(texts, padding="longest", truncation=True)
    assert loaded(texts, padding="longest", truncation=True)["input_ids"] == expected["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.model_max_length == MAX_LENGTH
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )


@pytest.mark.parametrize("words", [["red", ""], ["long sleeves"]])
def test_invalid_vocabulary_words_are_rejected(words):
    with pytest.raises(ValueError, match="whitespace"):
        build_word_level_tokenizer(words)


# --- image inputs ------------------------------------------------------------------------------------------------


def _full(value: Any, dtype: Any, channels: int | None = None) -> np.ndarray:
    shape = (HEIGHT, WIDTH) if channels is None else (HEIGHT, WIDTH, channels)
    return np.full(shape, value, dtype=dtype)


def _save(image: Image.Image, path: Path, **kwargs: Any) -> Path:
    image.save(path, **kwargs)
    return path


def _palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (WIDTH, HEIGHT), 1)
    image.putpalette([255, 0, 0, 128, 128, 128])
    if transparent:
        image.info["transparency"] = 1
    return image


def _png_rgb16(path: Path, rgb: tuple[int, int, int]) -> Path:
    """Write a 16-bit-per-channel RGB PNG (Pillow cannot write this mode itself)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + np.tile(np.array(rgb, dtype=">u2"), WIDTH).tobytes()
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 16, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * HEIGHT)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


ImageFactory = Callable[[Path], Any]
GOOD_IMAGES = [
    pytest.param(lambda _: Image.new("RGB", (WIDTH, HEIGHT), RED), RED, 0, id="pil-rgb"),
    pytest.param(lambda _: Image.new("L", (WIDTH, HEIGHT), 128), GREY, 0, id="pil-L"),
    pytest.param(lambda _: Image.new("1", (WIDTH, HEIGHT), 1), WHITE, 0, id="pil-1"),
    pytest.param(lambda _: Image.new("LA", (WIDTH, HEIGHT), (128, 255)), GREY, 0, id="pil-LA-opaque"),
    pytest.param(lambda _: Image.new("LA", (WIDTH, HEIGHT), (0, 0)), WHITE, 0, id="pil-LA-transparent"),
    pytest.param(lambda _: _palette(transparent=False), GREY, 0, id="pil-P"),
    pytest.param(lambda _: _palette(transparent=True), WHITE, 0, id="pil-P-transparency"),
    pytest.param(lambda _: Image.new("RGBA", (WIDTH, HEIGHT), (255, 0, 0, 0)), WHITE, 0, id="pil-RGBA-transparent"),
    pytest.param(lambda _: Image.new("RGBA", (WIDTH, HEIGHT), (255, 0, 0, 128)), PINK, 1, id="pil-RGBA-half"),
    pytest.param(lambda _: Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0)), RED, 0, id="pil-CMYK"),
    pytest.param(lambda _: Image.new("I;16", (WIDTH, HEIGHT), 32896), GREY, 0, id="pil-I;16"),
    pytest.param(lambda _: Image.new("I;16B", (WIDTH, HEIGHT), 65535), WHITE, 0, id="pil-I;16B"),
    pytest.param(lambda _: Image.new("I", (WIDTH, HEIGHT), 32896), GREY, 0, id="pil-I-16bit-range"),
    pytest.param(lambda _: Image.new("I", (WIDTH, HEIGHT), 2**30), GREY, 1, id="pil-I-32bit-range"),
    pytest.param(lambda _: Image.new("F", (WIDTH, HEIGHT), 0.5), GREY, 0, id="pil-F"),
    pytest.param(lambda _: Image.new("YCbCr", (WIDTH, HEIGHT), (128, 128, 128)), GREY, 1, id="pil-YCbCr"),
    pytest.param(lambda p: _save(Image.new("RGB", (WIDTH, HEIGHT), RED), p / "a.jpg", quality=95), RED, 8, id="jpeg"),
    pytest.param(
        lambda p: _save(Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0)), p / "a.jpg", quality=95),
        RED,
        8,
        id="jpeg-CMYK",
    ),
    pytest.param(lambda p: _save(Image.new("L", (WIDTH, HEIGHT), 128), p / "a.jpg"), GREY, 2, id="jpeg-L"),
    pytest.param(lambda p: _png_rgb16(p / "a.png", (65535, 0, 0)), RED, 0, id="png-RGB16-red"),
    pytest.param(lambda p: _save(Image.fromarray(_full(32896, np.uint16)), p / "a.png"), GREY, 0, id="png-I;16"),
    pytest.param(lambda p: _save(Image.fromarray(_full(65535, np.uint16)), p / "a.tif"), WHITE, 0, id="tiff-I;16"),
    pytest.param(
        lambda p: _save(Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 255, 0)), p / "a.png"), WHITE, 0, id="png-RGBA"
    ),
    pytest.param(lambda p: _save(_palette(transparent=True), p / "a.png"), WHITE, 0, id="png-P-transparency"),
    pytest.param(lambda p: _save(_palette(transparent=True), p / "a.gif"), WHITE, 0, id="gif-P-transparency"),
    pytest.param(
        lambda p: str(_save(Image.new("RGB", (WIDTH, HEIGHT), RED), p / "a.png")), RED, 0, id="png-str-path"
    ),
    pytest.param(lambda _: _full(128, np.uint8), GREY, 0, id="np-uint8-HxW"),
    pytest.param(lambda _: _full(128, np.uint8, 1), GREY, 0, id="np-uint8-HxWx1"),
    pytest.param(lambda _: _full(RED, np.uint8, 3), RED, 0, id="np-uint8-HxWx3"),
    pytest.param(lambda _: _full((255, 0, 0, 0), np.uint8, 4), WHITE, 0, id="np-uint8-HxWx4-transparent"),
    pytest.param(lambda _: _full((65535, 0, 0), np.uint16, 3), RED, 0, id="np-uint16-red"),
    pytest.param(lambda _: _full(32896, ">u2"), GREY, 0, id="np-uint16-big-endian"),
    pytest.param(lambda _: _full(True, bool), WHITE, 0, id="np-bool"),
    pytest.param(lambda _: _full((1.0, 0.0, 0.0), np.float32, 3), RED, 0, id="np-float32-red"),
    pytest.param(lambda _: _full(0.5, np.float64), GREY, 0, id="np-float64-grey"),
    pytest.param(lambda _: np.full((HEIGHT, 2 * WIDTH, 3), RED, np.uint8)[:, ::2], RED, 0, id="np-strided-view"),
    pytest.param(lambda _: torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, HEIGHT, WIDTH), RED, 0, id="t-CHW"),
    pytest.param(lambda _: torch.from_numpy(_full(RED, np.uint8, 3)), RED, 0, id="t-HWC-uint8"),
    pytest.param(
        lambda _: torch.from_numpy(_full((65535, 0, 0), np.uint16, 3)).permute(2, 0, 1), RED, 0, id="t-CHW-uint16"
    ),
    pytest.param(lambda _: torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool), WHITE, 0, id="t-bool-1xHxW"),
    pytest.param(lambda _: torch.full((HEIGHT, WIDTH), 0.5, dtype=torch.bfloat16), GREY, 0, id="t-bfloat16-HxW"),
    pytest.param(lambda _: torch.full((3, HEIGHT, WIDTH), 0.5, requires_grad=True), GREY, 0, id="t-requires-grad"),
]


@pytest.mark.parametrize(("factory", "expected", "tolerance"), GOOD_IMAGES)
def test_load_image_converts_to_rgb(tmp_path, factory: ImageFactory, expected, tolerance):
    image = load_image(factory(tmp_path))
    assert image.mode == "RGB"
    assert image.size == (WIDTH, HEIGHT)
    difference = np.abs(np.asarray(image, dtype=np.int16) - np.array(expected, dtype=np.int16))
    assert difference.max() <= tolerance


@pytest.mark.parametrize(("factory", "expected", "tolerance"), GOOD_IMAGES)
def test_processor_accepts_every_image_kind(tmp_path, processor, factory: ImageFactory, expected, tolerance):
    pixel_values = processor(images=factory(tmp_path))["pixel_values"]
    assert pixel_values.shape == (1, 3, 32, 32)
    assert pixel_values.dtype == torch.float32


def _truncated_jpeg(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text_as_png(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


BAD_IMAGES = [
    pytest.param(lambda p: p / "missing.png", FileNotFoundError, "missing.png", id="missing-file"),
    pytest.param(lambda p: str(p / "missing.jpg"), FileNotFoundError, "missing.jpg", id="missing-file-str"),
    pytest.param(lambda p: _truncated_jpeg(p / "cut.jpg"), ValueError, "cut.jpg' cannot be decoded", id="truncated"),
    pytest.param(lambda p: _text_as_png(p / "notes.png"), ValueError, "notes.png' is not an image", id="text-file"),
    pytest.param(lambda _: 3, ValueError, "unsupported type int", id="int"),
    pytest.param(lambda _: {"pixels": 1}, ValueError, "unsupported type dict", id="dict"),
    pytest.param(lambda _: b"/tmp/a.png", ValueError, "unsupported type bytes", id="bytes"),
    pytest.param(lambda _: np.zeros((1, HEIGHT, WIDTH, 3), np.uint8), ValueError, "(1, 5, 6, 3)", id="np-4d"),
    pytest.param(lambda _: np.zeros((HEIGHT, WIDTH, 5), np.uint8), ValueError, "(5, 6, 5)", id="np-5-channels"),
    pytest.param(lambda _: np.zeros((3, HEIGHT, WIDTH), np.uint8), ValueError, "(3, 5, 6)", id="np-channels-first"),
    pytest.param(lambda _: np.zeros((0, 0, 3), np.uint8), ValueError, "(0, 0, 3)", id="np-empty"),
    pytest.param(lambda _: np.zeros(5, np.uint8), ValueError, "(5,)", id="np-1d"),
    pytest.param(lambda _: _full(7, np.int64), ValueError, "dtype int64", id="np-int64"),
    pytest.param(lambda _: _full(255.0, np.float32), ValueError, "must lie in [0, 1]", id="np-float-0-255"),
    pytest.param(lambda _: _full(np.nan, np.float32), ValueError, "NaN", id="np-float-nan"),
    pytest.param(lambda _: Image.new("RGB", (0, 0)), ValueError, "empty PIL image", id="pil-empty"),
    pytest.param(lambda _: torch.zeros(2, 3, HEIGHT, WIDTH), ValueError, "(2, 3, 5, 6)", id="t-4d"),
    pytest.param(lambda _: torch.zeros(3, 0, WIDTH), ValueError, "(3, 0, 6)", id="t-empty"),
    pytest.param(lambda _: torch.zeros(3, HEIGHT, 3), ValueError, "ambiguous shape (3, 5, 3)", id="t-ambiguous"),
    pytest.param(lambda _: torch.zeros(3, HEIGHT, WIDTH, dtype=torch.int64), ValueError, "dtype int64", id="t-int64"),
]


@pytest.mark.parametrize(("factory", "error", "message"), BAD_IMAGES)
def test_load_image_rejects_bad_input(tmp_path, factory: ImageFactory, error, message):
    with pytest.raises(error) as raised:
        load_image(factory(tmp_path))
    assert message in str(raised.value)
    assert "image" in str(raised.value)


def test_bad_image_in_batch_names_its_index(tmp_path, processor):
    good = Image.new("RGB", (WIDTH, HEIGHT))
    with pytest.raises(ValueError, match=r"images\[1\].*bad\.png' is not an image"):
        processor(images=[good, _text_as_png(tmp_path / "bad.png")])
    with pytest.raises(ValueError, match=r"images\[2\].*\(5, 6, 5\)"):
        processor(images=(good, good, np.zeros((HEIGHT, WIDTH, 5), np.uint8)))
    with pytest.raises(FileNotFoundError, match=r"images\[0\].*nowhere\.png"):
        processor(images=[tmp_path / "nowhere.png"])


# --- processor ---------------------------------------------------------------------------------------------------


def test_text_only_pads_to_longest(processor, tokenizer):
    batch = processor(text=["red dress with long sleeves", ""])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (2, 7)
    assert batch["input_ids"][1].tolist() == [tokenizer.bos_token_id, tokenizer.eos_token_id] + [0] * 5
    assert batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0]


def test_text_is_truncated_with_eos(processor, tokenizer):
    with pytest.warns(UserWarning, match="text longer than the tokenizer's 8 tokens was truncated"):
        ids = processor(text="a red dress with long sleeves and a red shirt")["input_ids"]
    assert ids.shape == (1, MAX_LENGTH)
    assert ids[0, -1].item() == tokenizer.eos_token_id


def test_images_and_text_together(processor):
    batch = processor(images=[Image.new("RGB", (40, 50), RED)] * 2, text=["red", "a shirt"])
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask"}
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    red, green, blue = batch["pixel_values"][0, :, 16, 16].tolist()
    assert red > 0 > green and red > blue


def test_keyword_arguments_go_to_image_processor(processor):
    batch = processor(images=Image.new("RGB", (40, 50)), do_center_crop=False)
    assert batch["pixel_values"].shape == (1, 3, 40, 32)


def test_return_tensors_none_gives_lists(processor, tokenizer):
    batch = processor(text="red", return_tensors=None)
    red = tokenizer.convert_tokens_to_ids("red")
    assert batch["input_ids"] == [[tokenizer.bos_token_id, red, tokenizer.eos_token_id]]


def test_siglip_style_processor_pads_to_max_length(tokenizer):
    siglip = ScotProcessor(SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer, text_padding="max_length")
    batch = siglip(images=Image.new("RGB", (40, 50)), text=["red", ""])
    assert batch["input_ids"].shape == (2, MAX_LENGTH)
    assert batch["attention_mask"].sum(dim=-1).tolist() == [3, 2]
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


def test_extra_image_processor_outputs_are_kept(tokenizer):
    siglip2 = ScotProcessor(Siglip2ImageProcessor(max_num_patches=16, patch_size=8), tokenizer, "max_length")
    batch = siglip2(images=[Image.new("RGB", (40, 50))], text="red")
    assert {"pixel_values", "pixel_attention_mask", "spatial_shapes", "input_ids", "attention_mask"} <= set(batch)
    assert batch["pixel_attention_mask"].shape == (1, 16)


def test_processor_round_trip(tmp_path, image_processor, tokenizer):
    processor = ScotProcessor(image_processor, tokenizer, text_padding="max_length")
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["text_padding"] == "max_length"
    loaded = ScotProcessor.from_pretrained(tmp_path)
    assert loaded.text_padding == "max_length"
    inputs = {"images": [Image.new("RGB", (40, 50), RED), np.zeros((20, 30), np.uint8)], "text": ["red dress", ""]}
    expected, actual = processor(**inputs), loaded(**inputs)
    assert set(actual) == set(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key])


def test_invalid_text_padding_is_rejected(image_processor, tokenizer):
    with pytest.raises(ValueError, match="text_padding"):
        ScotProcessor(image_processor, tokenizer, text_padding="do_not_pad")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs `images`, `text` or both"),
        ({"text": ["red", 3]}, r"text\[1\] must be a str, got int"),
        ({"text": [b"red"]}, r"text\[0\] must be a str, got bytes"),
        ({"text": 5}, "text must be a str or a list of str, got int"),
        ({"text": []}, "text must not be an empty list"),
        ({"images": []}, "images must not be an empty list"),
        ({"text": "red", "do_resize": False}, r"\['do_resize'\] were given without images"),
    ],
)
def test_processor_rejects_bad_arguments(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)
