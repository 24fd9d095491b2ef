"""Pinned values of the shipped world CLIP: a change to its weights, the renderer, the caption grammar, the
processor or the encoding path shows up here."""

import pytest
import torch

from modeling_scot import ScotModel, encode_images, encode_texts
from modeling_scot.world import caption, clip_path, render_scene, scene_from_id

SCENE = "scene_2-circle-green-large-solid_5-circle-green-medium-outlined_6-triangle-red-large-solid"
CAPTION = (
    "a large solid green circle in the top right and a medium outlined green circle in the middle right "
    "and a large solid red triangle in the bottom left"
)
IMAGE_HEAD = [-0.0776, -0.1465, 0.0741, -0.0190, 0.1167, 0.0392, -0.0018, 0.0102]
TEXT_HEAD = [-0.0617, -0.1246, 0.0154, -0.0241, 0.1802, 0.0379, 0.0476, 0.0067]
IMAGE_TEXT_COSINE = 0.9393


@pytest.fixture(scope="module")
def world_model() -> ScotModel:
    return ScotModel.from_encoder(clip_path()).eval()


def test_the_fixed_scene_has_the_fixed_caption():
    assert caption(scene_from_id(SCENE)) == CAPTION


def test_world_clip_embeddings_are_pinned(world_model):
    image = encode_images(world_model, [render_scene(scene_from_id(SCENE))], progress=False)[0]
    text = encode_texts(world_model, [CAPTION], progress=False)[0]
    assert torch.allclose(image[:8], torch.tensor(IMAGE_HEAD), atol=2e-4)
    assert torch.allclose(text[:8], torch.tensor(TEXT_HEAD), atol=2e-4)
    assert float(image @ text) == pytest.approx(IMAGE_TEXT_COSINE, abs=2e-4)
