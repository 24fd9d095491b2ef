import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, CLIPModel

from modeling_scot import SCOT_VERSION, Combiner, ScotConfig, ScotModel, ScotOutput

REPO_ROOT = Path(__file__).resolve().parents[2]


def _inputs(processor, texts=("make it blue", "a red circle on the left")):
    torch.manual_seed(3)
    pixel_values = torch.randn(len(texts), 3, 32, 32)
    tokens = processor(text=list(texts), return_tensors="pt")
    return dict(pixel_values=pixel_values, input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])


# ----- Combiner -------------------------------------------------------------------------------------


def test_combiner_output_is_weighted_sum_plus_fusion():
    torch.manual_seed(0)
    combiner = Combiner(embed_dim=8, projection_dim=12, hidden_dim=10, dropout=0.0)
    image, text = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    composed, weight = combiner(image, text)
    assert composed.shape == (5, 8) and weight.shape == (5,)
    assert torch.allclose(composed.norm(dim=-1), torch.ones(5))
    assert ((weight > 0) & (weight < 1)).all()
    joint = torch.cat([combiner.image_projection(image), combiner.text_projection(text)], dim=-1)
    expected = weight[:, None] * text + (1 - weight[:, None]) * image + combiner.fusion(joint)
    assert torch.allclose(composed, F.normalize(expected, dim=-1), atol=1e-6)
    assert len(set(weight.tolist())) > 1, "the modality weight must depend on the input"


# ----- ScotModel ------------------------------------------------------------------------------------


def test_features_match_the_wrapped_clip(scot_model, tiny_clip_dir, tiny_processor):
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    inputs = _inputs(tiny_processor)
    image = scot_model.get_image_features(inputs["pixel_values"])
    text = scot_model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    assert isinstance(image, torch.Tensor) and isinstance(text, torch.Tensor)
    with torch.no_grad():
        ref_image = clip.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        ref_text = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
    assert torch.allclose(image, F.normalize(ref_image, dim=-1), atol=1e-6)
    assert torch.allclose(text, F.normalize(ref_text, dim=-1), atol=1e-6)
    stacked = torch.stack([inputs["input_ids"], inputs["input_ids"]], dim=1)
    assert scot_model.get_text_features(stacked).shape == (2, 2, 16)


def test_forward_and_compose_agree(scot_model, tiny_processor):
    inputs = _inputs(tiny_processor)
    out = scot_model(**inputs)
    assert isinstance(out, ScotOutput) and out.loss is None
    assert out.query_embeds.shape == (2, 16) and out.modality_weight.shape == (2,)
    composed = scot_model.compose(out.image_embeds, out.text_embeds)
    assert torch.equal(composed.query_embeds, out.query_embeds)
    with_loss = scot_model(**inputs, target_input_ids=inputs["input_ids"], target_attention_mask=inputs["attention_mask"])
    expected = scot_model.contrastive_loss(with_loss.query_embeds, with_loss.text_embeds)
    assert torch.allclose(with_loss.loss, expected)


def test_encoder_is_frozen_and_stays_in_eval(scot_model):
    scot_model.train()
    assert not scot_model.encoder.training and scot_model.combiner.training
    assert not any(p.requires_grad for p in scot_model.encoder.parameters())
    trainable = {n for n, p in scot_model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("combiner.") for n in trainable)


def test_learnable_temperature_lives_outside_the_encoder(tiny_clip_dir):
    model = ScotModel.from_clip(tiny_clip_dir, learnable_temperature=True, temperature=0.1)
    assert model.logit_scale.requires_grad
    assert model.logit_scale.exp().item() == pytest.approx(10.0)
    assert "logit_scale" in {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_save_load_round_trip(scot_model, tiny_processor, tmp_path):
    inputs = _inputs(tiny_processor)
    scot_model.eval()
    expected = scot_model(**inputs).query_embeds
    scot_model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and "processor_config.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    loaded = ScotModel.from_pretrained(tmp_path)
    assert loaded.processor is not None
    assert torch.equal(loaded(**inputs).query_embeds, expected)
    assert json.loads((tmp_path / "config.json").read_text())["scot_version"] == SCOT_VERSION


def test_combiner_only_save_is_small_and_loads_the_same(scot_model, tiny_processor, tmp_path):
    inputs = _inputs(tiny_processor)
    scot_model.eval()
    expected = scot_model(**inputs).query_embeds
    full, small = tmp_path / "full", tmp_path / "small"
    scot_model.save_pretrained(full)
    scot_model.save_pretrained(small, combiner_only=True)
    weights = load_file(small / "model.safetensors")
    assert weights and not any(k.startswith("encoder.") for k in weights)
    assert (small / "model.safetensors").stat().st_size < (full / "model.safetensors").stat().st_size
    config = json.loads((small / "config.json").read_text())
    assert config["combiner_only"] is True and config["encoder_name_or_path"] == scot_model.config.encoder_name_or_path
    assert scot_model.config.combiner_only is False
    loaded = ScotModel.from_pretrained(small)
    assert torch.equal(loaded(**inputs).query_embeds, expected)


def test_combiner_only_needs_an_encoder_id(tiny_clip_config, tmp_path):
    model = ScotModel(ScotConfig(encoder_config=tiny_clip_config.to_dict()))
    with pytest.raises(ValueError, match="encoder_name_or_path"):
        model.save_pretrained(tmp_path, combiner_only=True)


def test_combiner_only_rejects_foreign_weights(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path, combiner_only=True)
    save_file({"something.else": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="does not hold a SCOT Combiner"):
        ScotModel.from_pretrained(tmp_path)


# ----- backbones, attention, dtype ------------------------------------------------------------------


def test_attn_implementation_and_dtype_pass_through(tiny_clip_dir, tiny_processor):
    inputs = _inputs(tiny_processor)
    eager = ScotModel.from_clip(tiny_clip_dir, attn_implementation="eager")
    sdpa = ScotModel.from_clip(tiny_clip_dir, attn_implementation="sdpa")
    assert eager.encoder.config._attn_implementation == "eager"
    assert eager.encoder.text_model.config._attn_implementation == "eager"
    assert sdpa.encoder.vision_model.config._attn_implementation == "sdpa"
    text_eager = eager.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    text_sdpa = sdpa.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    assert torch.allclose(text_eager, text_sdpa, atol=1e-5)
    bf16 = ScotModel.from_clip(tiny_clip_dir, dtype=torch.bfloat16)
    assert bf16.encoder.dtype == torch.bfloat16
    image = bf16.get_image_features(inputs["pixel_values"])
    assert image.dtype == torch.float32
    assert torch.allclose(image, sdpa.get_image_features(inputs["pixel_values"]), atol=5e-2)
    assert bf16.compose(image, image).query_embeds.shape == (2, 16)


# ----- bad input ------------------------------------------------------------------------------------


def test_from_clip_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScotModel.from_clip(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        ScotModel.from_clip(tmp_path / "empty")
    bert = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(bert)
    with pytest.raises(ValueError, match=r"'bert' model; SCOT supports the dual-encoder families \['clip', 'siglip', 'siglip2', 'blip-2'\]"):
        ScotModel.from_clip(bert)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken"):
        ScotModel.from_clip(tmp_path / "broken")
    with pytest.raises(ValueError, match="Hub id, a folder or a PreTrainedModel"):
        ScotModel.from_clip(123)
    with pytest.raises(ValueError, match="unknown ScotConfig fields"):
        ScotModel.from_clip(tmp_path / "bert", combiner_width=3)


def test_from_pretrained_on_a_clip_folder_points_to_from_encoder(tiny_clip_dir):
    with pytest.raises(ValueError, match="from_encoder"):
        ScotModel.from_pretrained(tiny_clip_dir)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pixel_values=[[1.0]]), "pixel_values must be a torch.Tensor"),
        (dict(pixel_values=torch.zeros(3, 32)), "pixel_values must have 3 or 4 dimensions"),
        (dict(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.long)), "floating-point"),
        (dict(image_embeds=torch.zeros(1, 16)), "input_ids or text_embeds"),
        (dict(image_embeds=torch.zeros(1, 16), input_ids=torch.ones(1, 4)), "input_ids must be an integer"),
        (dict(image_embeds=torch.zeros(1, 7), text_embeds=torch.zeros(1, 7)), "16 features"),
        (dict(image_embeds=torch.zeros(2, 16), text_embeds=torch.zeros(1, 16)), "2 rows"),
        (dict(text_embeds=torch.zeros(1, 16)), "pixel_values or image_embeds"),
    ],
)
def test_forward_bad_inputs(scot_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scot_model(**kwargs)


def test_compiled_encoders_match_eager(scot_model, tiny_processor):
    """The GPU path (torch.compile) checked for correctness on CPU."""
    inputs = _inputs(tiny_processor)
    expected_image = scot_model.get_image_features(inputs["pixel_values"])
    expected_text = scot_model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    scot_model.compile_encoders()
    assert torch.allclose(scot_model.get_image_features(inputs["pixel_values"]), expected_image, atol=1e-5)
    assert torch.allclose(scot_model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), expected_text, atol=1e-5)


def test_push_to_hub_uploads_what_save_pretrained_writes(scot_model, tmp_path, monkeypatch):
    """push_to_hub saves through save_pretrained and hands the folder to the one upload path."""
    import modeling_scot.hub_upload as hub_upload

    uploaded = {}
    real_upload = hub_upload.upload_model_folder

    def capture(folder, repo_id, **kwargs):
        uploaded.update(repo_id=repo_id, kwargs=kwargs, files=real_upload(folder, repo_id, dry_run=True))
        config = json.loads((Path(folder) / "config.json").read_text())
        uploaded["combiner_only"] = config["combiner_only"]
        return "https://hub.example/commit/1"

    monkeypatch.setattr(ScotModel, "folder_uploader", staticmethod(capture))
    assert scot_model.push_to_hub("org/scot-tiny", combiner_only=True, private=True) == "https://hub.example/commit/1"
    scot_model.save_pretrained(tmp_path, combiner_only=True)
    assert uploaded["repo_id"] == "org/scot-tiny" and uploaded["kwargs"]["private"] is True
    assert uploaded["combiner_only"] is True
    assert uploaded["files"] == hub_upload.model_files_to_upload(tmp_path)


@pytest.mark.slow
def test_real_clip_checkpoint_from_the_hub():
    """Needs network access to the Hub (deselected by default)."""
    clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch32")
    model = ScotModel.from_clip("openai/clip-vit-base-patch32")
    inputs = model.processor(images=torch.zeros(3, 224, 224, dtype=torch.uint8).permute(1, 2, 0).numpy(), text="a cat")
    reference = F.normalize(clip.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output, dim=-1)
    assert torch.allclose(model.get_image_features(inputs["pixel_values"]), reference, atol=1e-5)


def test_token_ids_outside_the_vocabulary_get_a_clear_error(scot_model):
    vocab_size = scot_model.encoder.config.text_config.vocab_size
    with pytest.raises(ValueError, match=f"outside the text encoder's vocabulary of {vocab_size}"):
        scot_model.get_text_features(torch.tensor([[1, vocab_size + 5]]))
    with pytest.raises(ValueError, match="from -1"):
        scot_model.get_text_features(torch.tensor([[-1, 2]]))


def test_a_saved_model_naming_an_unknown_encoder_family_is_refused_naming_it(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config = json.loads(config_file.read_text())
    config["encoder_config"]["model_type"] = "bert"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"'bert' model; SCOT supports the dual-encoder families \['clip', 'siglip', 'siglip2', 'blip-2'\]"):
        ScotModel.from_pretrained(tmp_path / "model")
