"""Batched preprocessing gives the image processor's own pixels (to float32 rounding, 1e-5), for the processors it
reproduces; every other processor, and calls with processor arguments, go through the processor itself."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BlipImageProcessor, CLIPImageProcessor, SiglipImageProcessor

from modeling_scot import ScotProcessor
from modeling_scot.image_batches import BatchedImagePreprocessor

TOLERANCE = 1e-5
SHAPES = [(480, 640), (640, 480), (225, 224), (100, 333), (224, 224), (33, 17), (1, 1), (3, 900)]
PROCESSORS = {
    "clip": CLIPImageProcessor(),
    "clip-64": CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 56}),
    "blip-364": BlipImageProcessor(size={"height": 364, "width": 364}),
    "siglip": SiglipImageProcessor(),
    "clip-bilinear-no-normalize": CLIPImageProcessor(resample=2, do_normalize=False),
}


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for height, width in SHAPES]


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_pixels_equal_the_image_processors(name):
    processor = PROCESSORS[name]
    assert BatchedImagePreprocessor.supports(processor)
    expected = processor(images=images(), return_tensors="pt")["pixel_values"]
    found = BatchedImagePreprocessor(processor).pixel_values(images())
    assert found.shape == expected.shape and found.dtype == torch.float32
    assert (found - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize(
    "settings",
    [
        {"do_pad": True},
        {"size": {"shortest_edge": 224, "longest_edge": 300}},
        {"do_center_crop": False},  # resized images of different sizes
        {"crop_size": {"height": 300, "width": 300}},  # larger than the resized image: the processor pads
        {"do_resize": False},
    ],
)
def test_other_settings_are_left_to_the_image_processor(settings):
    assert not BatchedImagePreprocessor.supports(CLIPImageProcessor(**settings))


def test_the_processor_uses_the_batched_path_only_where_it_gives_the_same_pixels(word_tokenizer):
    processor = ScotProcessor(CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              word_tokenizer)
    direct = processor.image_processor(images=images(), return_tensors="pt")["pixel_values"]
    assert (processor(images=images())["pixel_values"] - direct).abs().max() <= TOLERANCE
    with_arguments = processor(images=images(), do_normalize=False)["pixel_values"]  # the image processor's call
    assert with_arguments.min() >= 0 and with_arguments.max() <= 1
    assert processor(images=images(), return_tensors="np")["pixel_values"].shape == direct.shape
