"""Models saved by modeling_scot 0.1.0 (tests/fixtures, see its README) load and give the outputs 0.1.0 gave."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_scot import ScotModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_0_1_0_model_loads_with_the_same_outputs(tmp_path):
    model = ScotModel.from_pretrained(FIXTURES / "scot-0.1.0").eval()
    inputs = load_file(FIXTURES / "inputs.safetensors")
    expected = load_file(FIXTURES / "scot-0.1.0-outputs.safetensors")
    with torch.no_grad():
        out = model(**inputs)
    assert torch.equal(model.get_image_features(inputs["pixel_values"]), expected["image_embeds"])
    assert torch.equal(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), expected["text_embeds"])
    assert torch.equal(out.query_embeds, expected["query_embeds"])
    assert model.processor is not None and model.config.encoder_config.model_type == "clip"
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert any(k.startswith("encoder.") for k in weights) and not any(k.startswith("clip.") for k in weights)
    assert torch.equal(ScotModel.from_pretrained(tmp_path)(**inputs).query_embeds, expected["query_embeds"])


def test_a_0_1_0_region_model_fails_saying_what_to_do():
    with pytest.raises(ValueError, match=r"grid-region referents \(region_grid=3\).*Retrain a plain Combiner"):
        ScotModel.from_pretrained(FIXTURES / "scot-0.1.0-regions")
