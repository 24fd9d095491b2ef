"""hub/train_world_blip2.py: its embeddings are those of BLIP-2's contrastive forward, a short run writes a folder
that transformers and SCOT load back, and a resumed run ends with the weights of an uninterrupted one."""

import json
import random

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Blip2ForImageTextRetrieval

from hub import train_world_clip
from hub.train_world_blip2 import (
    Settings,
    blip2_config,
    build_processor,
    check_round_trip,
    image_vectors,
    new_model,
    query_max_similarity,
    query_mean_similarity,
    text_embeds,
    train,
)
from modeling_scot import ScotProcessor
from modeling_scot.world import caption, sample_scene

TINY = Settings(
    steps=3,
    pairs_per_batch=4,
    pool_pairs=8,
    image_size=16,
    vision_width=32,
    vision_layers=1,
    qformer_width=32,
    qformer_layers=1,
    heads=2,
    num_query_tokens=4,
    qformer_dropout=0.1,  # a resumed run must draw the same dropout
    projection_dim=16,
    warmup_steps=1,
    eval_scenes=8,
    edit_pairs_per_batch=4,
)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A folder written by an uninterrupted tiny run, and the run's held-out scores."""
    output = tmp_path_factory.mktemp("world-blip2")
    return output, train(TINY, output, resume=False)


def test_embeddings_are_the_contrastive_outputs_of_blip2s_forward():
    torch.manual_seed(0)
    processor = build_processor(TINY)
    model = new_model(TINY, processor.tokenizer).eval()
    rng = random.Random(0)
    tokens = processor(text=["a red circle", caption(sample_scene(rng)), caption(sample_scene(rng))])
    assert not tokens["attention_mask"].all()  # padded rows are part of the check
    pixels = torch.randn(2, 3, TINY.image_size, TINY.image_size)
    with torch.inference_mode():
        forward = model(pixel_values=pixels, **tokens, use_image_text_matching_head=False)
        images = image_vectors(model, pixels)
        texts = text_embeds(model, tokens["input_ids"], tokens["attention_mask"])
    assert images.shape == (2, TINY.num_query_tokens, TINY.projection_dim)
    assert torch.allclose(images, forward.image_embeds, atol=1e-6)
    assert torch.allclose(texts, forward.text_embeds, atol=1e-6)
    assert torch.allclose(query_max_similarity(images, texts), forward.logits_per_image, atol=1e-6)


def test_text_is_pooled_at_bos_and_the_qformer_reads_the_vit():
    processor = build_processor(TINY)
    tokens = processor(text=["a red circle", "two"])
    assert (tokens["input_ids"][:, 0] == processor.tokenizer.bos_token_id).all()
    assert blip2_config(TINY, processor.tokenizer).qformer_config.encoder_hidden_size == TINY.vision_width


def test_query_poolings_score_the_best_query_and_the_renormalised_mean():
    texts = F.normalize(torch.randn(5, 8), dim=-1)
    images = F.normalize(torch.randn(3, 4, 8), dim=-1)
    images[1, 2] = texts[3]
    assert torch.allclose(query_max_similarity(images, texts)[1, 3], torch.tensor(1.0))
    assert torch.allclose(query_mean_similarity(images, texts), F.normalize(images.sum(1), dim=-1) @ texts.T, atol=1e-6)
    alike = images[:, :1].expand(-1, 4, -1)  # every query the same: both poolings are the plain cosine
    assert torch.allclose(query_max_similarity(alike, texts), images[:, 0] @ texts.T, atol=1e-6)
    assert torch.allclose(query_mean_similarity(alike, texts), images[:, 0] @ texts.T, atol=1e-6)


def test_short_run_ships_a_folder_that_loads_back(shipped):
    output, metrics = shipped
    assert sorted(metrics) == ["max", "mean"]
    assert metrics["max"]["scenes"] == TINY.eval_scenes
    assert {path.name for path in output.glob("*.bin")} == set()
    assert len(json.loads((output / "loss_curve.json").read_text())) == TINY.steps
    card = (output / "README.md").read_text()
    assert "python -m hub.train_world_blip2" in card and "mean of the queries" in card
    model = Blip2ForImageTextRetrieval.from_pretrained(output)
    processor = ScotProcessor.from_pretrained(output)
    scenes = [sample_scene(random.Random(seed)) for seed in range(3)]
    check_round_trip(output, model, processor, scenes, TINY)
    with torch.no_grad():
        model.text_projection.bias.add_(0.1)
    with pytest.raises(RuntimeError, match="text embeddings"):
        check_round_trip(output, model, processor, scenes, TINY)


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(shipped, tmp_path, monkeypatch):
    output, metrics = shipped
    save_state = train_world_clip.save_state

    def save_then_stop(folder, trained, optimizer, counters):
        save_state(folder, trained, optimizer, counters)
        if counters["step"] == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train_world_clip, "SAVE_EVERY_S", -1.0)
        patch.setattr(train_world_clip, "save_state", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train(TINY, tmp_path, resume=False)
    assert json.loads((tmp_path / train_world_clip.STATE_DIR / "counters.json").read_text())["step"] == 2
    assert train(TINY, tmp_path, resume=True) == metrics
    uninterrupted, resumed = load_file(output / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(uninterrupted[name], resumed[name]) for name in uninterrupted)
    states = [load_file(folder / train_world_clip.STATE_DIR / "model.safetensors") for folder in (output, tmp_path)]
    assert torch.equal(states[0]["temperature"], states[1]["temperature"])

