"""`--dtype auto` picks bf16 where the hardware runs it fast, and bf16 embeddings stay within cosine 0.999 of fp32."""

import random

import torch
import torch.nn.functional as F

from modeling_scot import ScotModel
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.runtime import cpu_runs_bf16_fast, resolve_dtype
from modeling_scot.world import caption, clip_path, render_scene, sample_scene

MIN_COSINE = 0.999


def test_auto_is_bf16_exactly_on_cpus_with_bf16_matrix_instructions():
    expected = torch.bfloat16 if cpu_runs_bf16_fast() else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    assert resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_bf16_embeddings_of_the_world_clip_match_fp32_ones():
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(48)]
    images, texts = [render_scene(scene) for scene in scenes], [caption(scene, rng) for scene in scenes]
    fp32 = ScotModel.from_encoder(clip_path()).eval()
    bf16 = ScotModel.from_encoder(clip_path(), dtype=torch.bfloat16).eval()
    assert bf16.encoder.dtype == torch.bfloat16
    for encode, inputs in ((encode_images, images), (encode_texts, texts)):
        reference, low = encode(fp32, inputs, progress=False), encode(bf16, inputs, progress=False)
        cosines = F.cosine_similarity(reference, low, dim=-1)
        assert cosines.min() >= MIN_COSINE, (encode.__name__, float(cosines.min()))
