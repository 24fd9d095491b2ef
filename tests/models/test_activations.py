import pytest
import torch
from transformers import AutoModel, CLIPModel
from transformers.activations import QuickGELUActivation

from modeling_scot import ScotModel
from modeling_scot.activations import InferenceQuickGELU, use_inference_activations


def test_inference_quick_gelu_matches_transformers_and_leaves_its_input_alone():
    inputs = torch.cat([torch.randn(4096) * 3, torch.tensor([-80.0, -20.0, 0.0, 20.0, 80.0])])
    original = inputs.clone()
    with torch.inference_mode():
        fast = InferenceQuickGELU()(inputs)
    assert torch.equal(inputs, original)
    assert torch.allclose(fast, QuickGELUActivation()(inputs), rtol=1e-5, atol=1e-6)


def test_inference_quick_gelu_keeps_the_reference_gradient():
    inputs = torch.randn(64, requires_grad=True)
    InferenceQuickGELU()(inputs).sum().backward()
    fast_grad = inputs.grad.clone()
    inputs.grad = None
    QuickGELUActivation()(inputs).sum().backward()
    assert torch.allclose(fast_grad, inputs.grad)


def test_scot_model_swaps_every_quick_gelu_and_embeds_as_the_plain_clip(tiny_clip_dir, tiny_processor):
    model = ScotModel.from_clip(tiny_clip_dir).eval()
    modules = list(model.encoder.modules())
    assert not any(isinstance(m, QuickGELUActivation) for m in modules)
    assert sum(isinstance(m, InferenceQuickGELU) for m in modules) == 4  # 2 layers in each tower
    assert "activation" not in " ".join(model.state_dict())
    reference = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    inputs = tiny_processor(text=["a red circle", "a big blue square"], images=[torch.rand(3, 32, 32)] * 2, return_tensors="pt")
    with torch.inference_mode():
        expected_image = torch.nn.functional.normalize(reference.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output, dim=-1)
        expected_text = torch.nn.functional.normalize(
            reference.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output, dim=-1
        )
        assert torch.allclose(model.get_image_features(inputs["pixel_values"]), expected_image, atol=1e-5)
        assert torch.allclose(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), expected_text, atol=1e-5)


def test_other_activations_are_left_alone(tiny_siglip_config):
    siglip = AutoModel.from_config(tiny_siglip_config)
    assert use_inference_activations(siglip) == 0


def test_train_mode_reaches_the_combiner_only(scot_model):
    scot_model.encoder.train()  # even an encoder switched to train mode by hand goes back to eval
    scot_model.train()
    assert scot_model.training and scot_model.combiner.training and not scot_model.encoder.training
    assert not any(m.training for m in scot_model.encoder.modules())
    scot_model.eval()
    assert not scot_model.training and not scot_model.combiner.training
    with pytest.raises(ValueError, match="takes a bool"):
        scot_model.train("yes")

