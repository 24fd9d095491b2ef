"""Text-Anchored Tuning on the tiny encoders: adapter placement, training, the saved folder, merging, refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from modeling_scot.encoders import adapter_for
from modeling_scot.methods import build_method
from modeling_scot.methods.tat_model import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    CONFIG_NAME,
    TatConfig,
    add_tat_adapters,
    load_tat_encoder,
    load_tat_model,
)
from modeling_scot.methods.tat_training import (
    TatTrainingArguments,
    image_caption_pairs,
    last_complete_adapter_checkpoint,
    text_anchored_loss,
    train_tat,
)
from modeling_scot.modeling_scot import ScotModel, load_dual_encoder
from tests.conftest import ENCODER_FAMILIES, family_inputs

STEPS = 6


def tat_args(tmp_path, steps: int = STEPS, **overrides) -> TatTrainingArguments:
    values = dict(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-2,
        warmup_steps=0, lr_scheduler_type="constant", optim="adamw_torch", save_strategy="steps", save_steps=2,
        logging_steps=1, seed=0, data_seed=0, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    return TatTrainingArguments(**values | overrides)


def image_inputs(processor, dataset) -> dict:
    return dict(processor(images=list(image_caption_pairs(dataset)[0]["image"]), return_tensors="pt"))


def caption_embeds(encoder, processor, captions) -> torch.Tensor:
    tokens = processor(text=captions, return_tensors="pt")
    return adapter_for(encoder).text_embeds(tokens["input_ids"], tokens.get("attention_mask"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip_dir, triplet_dataset):
    """TAT run for STEPS steps on the tiny CLIP: (tuned PeftModel, metrics, output folder)."""
    output = tmp_path_factory.mktemp("tat")
    model, metrics = train_tat(tiny_clip_dir, triplet_dataset, tat_args(output / "args"), output)
    return model, metrics, output


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_adapters_sit_on_the_image_tower_attention_only_and_only_they_learn(family, tiny_encoder_dirs, word_tokenizer):
    encoder = load_dual_encoder(tiny_encoder_dirs[family])
    layers = encoder.config.vision_config.num_hidden_layers
    model = add_tat_adapters(encoder, TatConfig())
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    per_layer = 2 if family == "blip-2" else 4  # BLIP-2's vision attention has one fused qkv and one projection
    assert len(adapted) == per_layer * layers
    assert all(".vision_model.encoder.layers." in name and ".self_attn." in name for name in adapted)
    assert not any(isinstance(module, LoraLayer) for module in adapter_for(encoder).text_tower.modules())
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)

    inputs = family_inputs(family, word_tokenizer)
    image_kwargs = {k: v for k, v in inputs.items() if k in ("pixel_attention_mask", "spatial_shapes")}
    adapter = adapter_for(model.get_base_model())
    images = adapter.image_embeds(inputs["pixel_values"], **image_kwargs)
    with torch.no_grad():
        texts = adapter.text_embeds(inputs["input_ids"], inputs["attention_mask"])
    text_anchored_loss(images, texts, 0.07).backward()
    with_gradient = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert with_gradient == trainable
    assert all(parameter.grad.abs().sum() > 0 for name, parameter in model.named_parameters() if ".lora_B." in name)


def test_a_pattern_reaching_the_text_tower_is_refused_and_undone(tiny_clip_dir):
    encoder = load_dual_encoder(tiny_clip_dir)
    with pytest.raises(ValueError, match="outside the image tower"):
        add_tat_adapters(encoder, TatConfig(target_modules=r".*self_attn\.q_proj"))
    assert not any(isinstance(module, LoraLayer) for module in encoder.modules())
    with pytest.raises(ValueError, match="matches no module"):
        add_tat_adapters(encoder, TatConfig(target_modules=r"vision_model\.nothing"))


def test_training_changes_the_adapters_only_and_lowers_the_loss(
    trained, tiny_clip_dir, tiny_processor, triplet_dataset
):
    model, metrics, _ = trained
    assert metrics["steps"] == STEPS and metrics["images"] == 4 and metrics["captions"] == 4  # deduped by source_id
    base = load_dual_encoder(tiny_clip_dir)
    tuned = {name.removeprefix("base_model.model.").replace(".base_layer", ""): tensor
             for name, tensor in model.state_dict().items() if ".lora_" not in name}  # fmt: skip
    assert tuned.keys() == base.state_dict().keys()
    assert all(torch.equal(tuned[name], tensor) for name, tensor in base.state_dict().items())
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if ".lora_B." in n)

    captions = image_caption_pairs(triplet_dataset)[1]
    targets = caption_embeds(base, tiny_processor, captions)
    pixels = image_inputs(tiny_processor, triplet_dataset)["pixel_values"]
    with torch.no_grad():
        before = text_anchored_loss(adapter_for(base).image_embeds(pixels), targets, 0.07)
        after = text_anchored_loss(adapter_for(model.get_base_model()).image_embeds(pixels), targets, 0.07)
    assert after < 0.8 * before
    assert metrics["train_loss"] < before


def test_saved_folder_is_peft_adapters_naming_the_base(trained, tiny_clip_dir):
    _, _, output = trained
    folder = output / "model"
    adapter_config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    assert adapter_config["base_model_name_or_path"] == tiny_clip_dir
    assert (adapter_config["r"], adapter_config["lora_alpha"], adapter_config["lora_dropout"]) == (16, 16.0, 0.1)
    weights = load_file(folder / ADAPTER_WEIGHTS_NAME)
    assert weights and all(".lora_" in name for name in weights)
    config = TatConfig.from_file(folder / CONFIG_NAME)
    assert config.base_name_or_path == tiny_clip_dir and config.temperature == 0.07
    assert TatConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"}) == config


def test_merged_encoder_matches_the_tuned_model_and_keeps_the_text_tower(
    trained, tiny_clip_dir, tiny_processor, triplet_dataset, word_tokenizer
):
    model, _, output = trained
    merged = load_tat_encoder(output / "model")
    assert type(merged).__name__ == "CLIPModel" and not any(isinstance(m, LoraLayer) for m in merged.modules())
    pixels = image_inputs(tiny_processor, triplet_dataset)["pixel_values"]
    with torch.no_grad():
        unmerged_images = adapter_for(model.get_base_model()).image_embeds(pixels)
        merged_images = adapter_for(merged).image_embeds(pixels)
        base_images = adapter_for(load_dual_encoder(tiny_clip_dir)).image_embeds(pixels)
    torch.testing.assert_close(merged_images, unmerged_images, atol=1e-5, rtol=0)
    assert not torch.allclose(merged_images, base_images, atol=1e-3)

    inputs = family_inputs("clip", word_tokenizer)
    with torch.no_grad():
        texts = [adapter_for(encoder).text_embeds(inputs["input_ids"], inputs["attention_mask"])
                 for encoder in (merged, load_dual_encoder(tiny_clip_dir))]  # fmt: skip
    assert torch.equal(*texts)

    scot = ScotModel.from_encoder(merged)
    assert scot.processor is not None  # the adapter folder carries the base's processor
    queries = build_method("slerp").queries(scot, merged_images, texts[0][:1].expand_as(merged_images))
    assert queries.shape == merged_images.shape


def test_a_different_base_is_refused_naming_both(trained, tiny_clip_dir, tiny_encoder_dirs, tmp_path, tiny_clip_config):
    _, _, output = trained
    folder = output / "model"
    torch.manual_seed(1)
    other = tmp_path / "other-clip"
    type(load_dual_encoder(tiny_clip_dir))(tiny_clip_config).save_pretrained(other)
    for base in (str(other), tiny_encoder_dirs["siglip"], load_tat_encoder(folder)):
        name = base if isinstance(base, str) else str(folder)
        with pytest.raises(ValueError, match="different encoder") as error:
            load_tat_model(folder, base)
        assert tiny_clip_dir in str(error.value) and name in str(error.value)
    load_tat_model(folder, load_dual_encoder(tiny_clip_dir, dtype=torch.bfloat16))  # the same weights in bf16


def test_damaged_folders_are_refused_clearly(trained, tmp_path):
    _, _, output = trained
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_tat_encoder(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (CONFIG_NAME, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME):
        (broken / name).write_bytes((output / "model" / name).read_bytes())
    (broken / ADAPTER_WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="adapters cannot be loaded"):
        load_tat_encoder(broken)
    (broken / CONFIG_NAME).write_text("{")
    with pytest.raises(ValueError, match="cannot be read as JSON"):
        load_tat_encoder(broken)


def test_resumed_run_equals_an_uninterrupted_one(trained, tiny_clip_dir, triplet_dataset, tmp_path, capsys):
    model, _, _ = trained
    train_tat(tiny_clip_dir, triplet_dataset, tat_args(tmp_path, steps=4), tmp_path)
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "checkpoint-9").mkdir()
    (checkpoints / "checkpoint-9" / "trainer_state.json").write_text("{}")  # half-written: no adapter weights
    assert last_complete_adapter_checkpoint(checkpoints) == str(checkpoints / "checkpoint-4")
    shutil.rmtree(checkpoints / "checkpoint-9")
    capsys.readouterr()
    resumed, metrics = train_tat(tiny_clip_dir, triplet_dataset, tat_args(tmp_path), tmp_path, resume=True)
    assert metrics["steps"] == STEPS
    assert capsys.readouterr().out.count("'loss'") == STEPS - 4  # only the steps after the checkpoint ran
    expected = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for name, parameter in resumed.named_parameters():
        if name in expected:
            torch.testing.assert_close(parameter, expected[name], atol=1e-6, rtol=0)


def test_bad_inputs_are_refused(tiny_clip_dir, triplet_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['caption'\]"):
        image_caption_pairs(triplet_dataset.remove_columns("caption"))
    with pytest.raises(ValueError, match="unknown TAT setting"):
        train_tat(tiny_clip_dir, triplet_dataset, tat_args(tmp_path), tmp_path, ranks=4)
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="not a saved TAT model"):
        train_tat(tiny_clip_dir, triplet_dataset, tat_args(tmp_path), tmp_path)
    for field, value in (("rank", 0), ("dropout", 1.0), ("temperature", 0.0), ("target_modules", "(")):
        with pytest.raises(ValueError, match=f"TatConfig.{field}"):
            TatConfig(**{field: value})
