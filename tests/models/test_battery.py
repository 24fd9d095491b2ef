"""One battery for every encoder family: forward, loss, gradients only in the Combiner, save/load,
combiner-only saves, and `trust_remote_code` loading in a fresh process."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from modeling_scot import ScotModel, ScotOutput
from modeling_scot.encoders import ADAPTERS
from tests.conftest import ENCODER_FAMILIES, family_inputs

IMAGE_INPUTS = ("pixel_values", "pixel_attention_mask", "spatial_shapes")


@pytest.fixture(params=ENCODER_FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def model(family, tiny_encoder_dirs) -> ScotModel:
    torch.manual_seed(0)
    return ScotModel.from_encoder(tiny_encoder_dirs[family], combiner_dropout=0.0).eval()


@pytest.fixture
def inputs(family, word_tokenizer) -> dict:
    return family_inputs(family, word_tokenizer)


def _image_inputs(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k in IMAGE_INPUTS}


def test_families_have_one_adapter_each():
    assert tuple(ADAPTERS) == ENCODER_FAMILIES


def test_forward_gives_normalised_queries_and_weights(model, inputs, family):
    out = model(**inputs)
    dim = model.config.embed_dim
    assert isinstance(out, ScotOutput) and out.loss is None
    assert out.query_embeds.shape == (2, dim) and out.modality_weight.shape == (2,)
    assert torch.allclose(out.query_embeds.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert type(model.encoder_adapter).family == family
    assert torch.equal(model.compose(out.image_embeds, out.text_embeds).query_embeds, out.query_embeds)


def _reference_features(model: ScotModel, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, D) image vectors and (B, D) text embeddings as the wrapped transformers model computes them: its
    feature methods, or BLIP-2 retrieval's own contrastive (ITC) forward."""
    encoder, text = model.encoder, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with torch.no_grad():
        if type(model.encoder_adapter).family == "blip-2":
            itc = encoder(**_image_inputs(inputs), **text, use_image_text_matching_head=False)
            assert torch.allclose(itc.logits_per_image, (itc.image_embeds @ itc.text_embeds.T).amax(dim=1))
            return itc.image_embeds, itc.text_embeds
        image = encoder.get_image_features(**_image_inputs(inputs)).pooler_output
        return F.normalize(image, dim=-1)[:, None], F.normalize(encoder.get_text_features(**text).pooler_output, dim=-1)


def test_features_are_the_wrapped_encoders_normalised(model, inputs):
    vectors, text = _reference_features(model, inputs)
    count = model.encoder_adapter.vectors_per_image
    assert vectors.shape == (2, count, model.config.embed_dim) and model.encoder_adapter.multi_vector == (count > 1)
    assert torch.allclose(model.get_image_vectors(**_image_inputs(inputs)), vectors, atol=1e-6)
    assert torch.allclose(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), text, atol=1e-6)
    pooled = F.normalize(vectors.mean(dim=1), dim=-1)  # the mean of the vectors (the one vector itself for K = 1)
    assert torch.allclose(model.get_image_features(**_image_inputs(inputs)), pooled, atol=1e-6)


def test_loss_trains_the_combiner_only(model, inputs):
    model.train()
    out = model(**inputs, target_input_ids=inputs["input_ids"].flip(0), target_attention_mask=inputs["attention_mask"].flip(0))
    assert out.loss is not None and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert grads and all(name.startswith("combiner.") for name in grads)
    assert all(g is not None and g.abs().sum() > 0 for name, g in grads.items() if name.endswith("weight"))
    assert not model.encoder.training


def test_text_with_replaced_tokens(model, inputs):
    """Replacing tokens by their own table rows changes nothing; other rows change the embedding and carry
    gradients (what pseudo-token methods train)."""
    adapter = model.encoder_adapter
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    replace = torch.zeros_like(ids, dtype=torch.bool)
    replace[:, 1] = True
    own = adapter.token_embedding(ids[replace]).detach()
    with torch.no_grad():
        assert torch.allclose(adapter.text_embeds_with_tokens(ids, mask, replace, own), adapter.text_embeds(ids, mask), atol=1e-6)
    pseudo = torch.randn_like(own, requires_grad=True)
    changed = adapter.text_embeds_with_tokens(ids, mask, replace, pseudo)
    assert not torch.allclose(changed, adapter.text_embeds(ids, mask).detach(), atol=1e-4)
    changed.sum().backward()
    assert pseudo.grad is not None and pseudo.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="token_embeds must have shape"):
        adapter.text_embeds_with_tokens(ids, mask, replace, pseudo[:1])


@pytest.mark.parametrize("combiner_only", [False, True])
def test_save_and_load_round_trip(model, inputs, tmp_path, combiner_only):
    expected = model(**inputs).query_embeds
    model.save_pretrained(tmp_path, combiner_only=combiner_only)
    weights = load_file(tmp_path / "model.safetensors")
    assert any(k.startswith("encoder.") for k in weights) != combiner_only
    loaded = ScotModel.from_pretrained(tmp_path)
    assert type(loaded.encoder) is type(model.encoder) and loaded.processor is not None
    assert torch.allclose(loaded(**inputs).query_embeds, expected, atol=1e-6)  # SigLIP: 6e-8 apart on reload


_REMOTE_LOAD = """
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
assert "modeling_scot" not in sys.modules, "the package must not be needed"
inputs = load_file(sys.argv[2])
with torch.no_grad():
    out = model(**inputs)
save_file({"query_embeds": out.query_embeds, "weight": out.modality_weight}, sys.argv[3])
print(type(model).__module__, type(model.processor).__name__)
"""


@pytest.mark.parametrize("combiner_only", [False, True])
def test_trust_remote_code_load_in_a_fresh_process(model, inputs, tmp_path, combiner_only):
    expected = model(**inputs)
    saved = tmp_path / "model"
    model.save_pretrained(saved, combiner_only=combiner_only)
    assert {p.name for p in saved.glob("*.py")} >= {"configuration_scot.py", "modeling_scot.py", "losses.py", "encoders.py"}
    assert not {"model_card.py", "hub_upload.py"} & {p.name for p in saved.glob("*.py")}
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(tmp_path / "inputs.safetensors"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", _REMOTE_LOAD, str(saved), str(tmp_path / "inputs.safetensors"), str(tmp_path / "out.safetensors")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout and "ScotProcessor" in result.stdout
    out = load_file(tmp_path / "out.safetensors")
    assert torch.allclose(out["query_embeds"], expected.query_embeds, atol=1e-6)
    assert torch.allclose(out["weight"], expected.modality_weight, atol=1e-6)


def test_auto_model_loads_the_saved_folder(model, inputs, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert isinstance(loaded, ScotModel)
    assert torch.allclose(loaded(**inputs).query_embeds, model(**inputs).query_embeds, atol=1e-6)
