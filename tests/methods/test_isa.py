import copy
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPModel

from modeling_scot import ScotModel
from modeling_scot.methods.isa_model import IsaConfig, IsaModel, processor_image_size, query_cost
from modeling_scot.methods.isa_training import (
    IsaTrainingArguments,
    check_isa_output,
    isa_losses,
    nearest_token_loss,
    train_isa,
    training_images,
)
from tests.conftest import COLOURS, ENCODER_FAMILIES, IMAGE_SIZE, MAX_TEXT_LENGTH, tuned_copy

TINY = {"num_tokens": 2, "patch_size": 8, "width": 16, "depth": 1, "heads": 2}
"""A light encoder smaller than the tiny towers (patch 8, width 32, 2 layers)."""
TEXTS = ["make it blue", "add a red star", "remove the circle"]


@pytest.fixture(scope="module")
def encoders(tiny_encoder_dirs) -> dict[str, ScotModel]:
    return {family: ScotModel.from_encoder(folder) for family, folder in tiny_encoder_dirs.items()}


def _isa(encoder, seed=0, **settings) -> IsaModel:
    torch.manual_seed(seed)
    return IsaModel.from_encoder(encoder, **(TINY | settings))


def _images(count=3):
    colours = list(COLOURS.values())
    return [Image.new("RGB", (40, 40), colours[i % len(colours)]) for i in range(count)]


def _state(module):
    return {name: value.clone() for name, value in module.state_dict().items()}


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_queries_are_normalised_and_never_run_the_image_tower(encoders, family):
    model = _isa(encoders[family])
    tower_calls = []
    hook = encoders[family].encoder_adapter.vision_tower.register_forward_hook(lambda *args: tower_calls.append(1))
    try:
        queries = model.compose(_images(), TEXTS)
        pixels = model.pixel_values(_images())
        from_pixels = model.compose(pixels, TEXTS)
    finally:
        hook.remove()
    assert tower_calls == []
    assert model.query_encoder(pixels).shape == (3, 2, encoders[family].encoder_adapter.token_embedding.embedding_dim)
    assert queries.shape == (3, model.config.embed_dim) and model.config.image_size == IMAGE_SIZE
    assert torch.allclose(queries.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(from_pixels, queries, atol=1e-6)
    assert not torch.allclose(queries[0], queries[1], atol=1e-4)  # the modification and the image both count


def test_the_gallery_is_the_unchanged_encoder(encoders):
    encoder = encoders["clip"]
    model = _isa(encoder)
    pixels = encoder.processor(images=_images(), return_tensors="pt")["pixel_values"]
    expected = encoder.get_image_features(pixels)
    assert torch.equal(model.gallery_embeds(_images()), expected)
    assert torch.equal(model.gallery_embeds(pixels), expected)
    assert model.encoder is encoder


def test_save_and_load_give_the_same_queries(tiny_clip_dir, tmp_path):
    encoder = ScotModel.from_encoder(tiny_clip_dir)
    model = _isa(encoder)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "isa" and config["encoder_name_or_path"] == tiny_clip_dir
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(model.query_encoder.state_dict())
    assert all(name.startswith(("light_encoder.", "token_learner.")) for name in saved)  # no encoder weights
    expected = model.compose(_images(), TEXTS)
    for loaded in (IsaModel.from_pretrained(tmp_path, encoder), IsaModel.from_pretrained(tmp_path)):
        assert loaded.config == model.config
        assert torch.allclose(loaded.compose(_images(), TEXTS), expected, atol=1e-6)
    half = ScotModel.from_encoder(tiny_clip_dir, dtype=torch.bfloat16)
    assert IsaModel.from_pretrained(tmp_path, half).compose(_images(), TEXTS).shape == expected.shape


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_a_tuned_copy_of_the_encoder_is_refused(encoders, tmp_path, tower):
    encoder = encoders["clip"]
    _isa(encoder).save_pretrained(tmp_path / "isa")
    assert IsaModel.from_pretrained(tmp_path / "isa", copy.deepcopy(encoder)).config.encoder_signature
    kind = "image" if tower == "vision" else "text"
    with pytest.raises(ValueError, match=f"is a different one \\(their {kind} towers differ: their embeddings of the probe {kind} have cosine"):
        IsaModel.from_pretrained(tmp_path / "isa", tuned_copy(encoder, tower))


def test_another_encoder_is_refused(tiny_clip_dir, tiny_clip_config, tiny_processor, encoders, tmp_path):
    _isa(encoders["clip"]).save_pretrained(tmp_path / "isa")
    torch.manual_seed(1)
    other = tmp_path / "other-clip"
    CLIPModel(tiny_clip_config).save_pretrained(other)
    tiny_processor.save_pretrained(other)
    with pytest.raises(ValueError, match=f"trained with the encoder '{tiny_clip_dir}'.*'{other}'.*token-embedding"):
        IsaModel.from_pretrained(tmp_path / "isa", str(other))
    with pytest.raises(ValueError, match="model_type 'clip' != 'siglip'"):
        IsaModel.from_pretrained(tmp_path / "isa", encoders["siglip"])


def test_long_modifications_are_cut_with_one_warning_and_keep_the_placeholders(encoders):
    model = _isa(encoders["clip"])
    texts = ["make it " + "red " * 30, "make it blue", "swap the circle and the square " * 5]
    message = f"2 of 3 modifications were cut to fit the text tower's {MAX_TEXT_LENGTH} tokens"
    with pytest.warns(UserWarning, match=message) as caught:
        queries = model.compose(_images(), texts)
    assert len(caught) == 1 and torch.isfinite(queries).all()
    batch = model.tokenizer(model.prompt_pieces(texts))
    assert batch.counts().tolist() == [2, 2, 2] and batch.input_ids.shape[1] == MAX_TEXT_LENGTH


def _train(encoder, data, folder, steps, resume=False):
    args = IsaTrainingArguments(
        output_dir=str(folder), max_steps=steps, per_device_train_batch_size=4, learning_rate=3e-3,
        lr_scheduler_type="constant", warmup_steps=0, save_strategy="steps", save_steps=2, logging_steps=1,
        seed=0, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    model = _isa(encoder)
    return model, train_isa(model, data, args, resume=resume)


def test_training_lowers_the_loss_trains_only_isa_and_resumes(tiny_clip_dir, triplet_dataset, tmp_path):
    encoder = ScotModel.from_encoder(tiny_clip_dir)
    frozen = _state(encoder.encoder)
    untrained = _isa(encoder)
    images = training_images(triplet_dataset)["image"]
    inputs = {"pixel_values": untrained.pixel_values(images), "image_embeds": untrained.gallery_embeds(images)}
    prompt = untrained.tokenizer([untrained.training_pieces()])

    def loss(model):
        with torch.no_grad():
            return isa_losses(model.query_encoder, encoder.encoder_adapter, prompt, inputs, 0.07, 0.1)["loss"]

    straight, metrics = _train(encoder, triplet_dataset, tmp_path, steps=6)
    assert metrics["steps"] == 6 and metrics["images"] == 4  # one image per source_id
    assert loss(straight) < 0.8 * loss(untrained)
    assert json.loads((tmp_path / "train_results.json").read_text()) == metrics
    assert set(load_file(tmp_path / "model" / "model.safetensors")) == set(straight.query_encoder.state_dict())
    assert all(torch.equal(frozen[name], value) for name, value in encoder.encoder.state_dict().items())
    assert all(parameter.grad is None for parameter in encoder.encoder.parameters())
    trained = straight.query_encoder.state_dict()
    assert all(not torch.equal(trained[name], value) for name, value in untrained.query_encoder.state_dict().items()
               if name.endswith("weight"))  # fmt: skip

    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-6")  # as if the run had stopped after step 4
    resumed, metrics = _train(encoder, triplet_dataset, tmp_path, steps=6, resume=True)
    assert metrics["steps"] == 6
    for name, value in trained.items():
        assert torch.allclose(resumed.query_encoder.state_dict()[name], value, atol=1e-5), name


def test_the_light_encoder_costs_less_than_the_image_tower(encoders):
    cost = query_cost(_isa(encoders["clip"]), repeats=1)
    assert 0 < cost["light_flops"] < cost["tower_flops"] and cost["flops_ratio"] < 1
    assert cost["light_parameters"] < cost["tower_parameters"]
    assert cost["flops_ratio"] == cost["light_flops"] / cost["tower_flops"]


def test_damaged_files_are_named(encoders, tmp_path):
    folder = tmp_path / "isa"
    _isa(encoders["clip"]).save_pretrained(folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"isa/model.safetensors is not a readable safetensors file"):
        IsaModel.from_pretrained(folder, encoders["clip"])
    _isa(encoders["clip"], width=32).save_pretrained(tmp_path / "wider")
    shutil.copy(tmp_path / "wider" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"isa/model.safetensors holds tensors"):
        IsaModel.from_pretrained(folder, encoders["clip"])
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"isa/config.json cannot be read as JSON"):
        IsaModel.from_pretrained(folder, encoders["clip"])
    (folder / "config.json").write_text(json.dumps({"model_type": "lincir"}))
    with pytest.raises(ValueError, match=r"isa/config.json is not an ISA config"):
        IsaModel.from_pretrained(folder, encoders["clip"])
    with pytest.raises(ValueError, match="is not a saved ISA model"):
        check_isa_output(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "isa", "embed_dim": 16, "token_dim": 32}))
    with pytest.raises(ValueError, match=r"isa/config.json: .*image_size"):
        IsaModel.from_pretrained(folder, encoders["clip"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IsaModel.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"heads": 3}, r"IsaConfig.width \(16\) must be a multiple of IsaConfig.heads \(3\)"),
        ({"patch_size": 64}, r"IsaConfig.patch_size \(64\) exceeds the image_size \(32\)"),
        ({"temperature": 0}, "IsaConfig.temperature must be a number"),
        ({"local_weight": -1.0}, "IsaConfig.local_weight must be a number"),
        ({"num_tokens": 0}, "IsaConfig.num_tokens must be a positive integer"),
        ({"num_tokens": 20}, r"IsaConfig.num_tokens \(20\) placeholders do not fit"),
        ({"prompt_template": "{modification} $"}, "IsaConfig.prompt_template must hold the placeholder"),
        ({"image_size": 64}, r"unknown ISA setting\(s\) \['image_size'\]"),
    ],
)
def test_bad_settings_are_named(encoders, settings, message):
    with pytest.raises(ValueError, match=message):
        _isa(encoders["clip"], **settings)


def test_the_config_is_plain_data_and_checked():
    config = IsaConfig(embed_dim=16, token_dim=32, image_size=32)
    values = json.loads(json.dumps(config.to_dict()))
    assert values.pop("model_type") == "isa" and IsaConfig(**values) == config
    with pytest.raises(ValueError, match="IsaConfig.image_size must be a positive integer, got True"):
        IsaConfig(embed_dim=16, token_dim=32, image_size=True)


def test_bad_inputs_are_named(encoders, triplet_dataset):
    model = _isa(encoders["clip"])
    with pytest.raises(ValueError, match="modifications must be a list of 3 strings"):
        model.compose(_images(), ["make it blue"])
    with pytest.raises(ValueError, match=r"pixel values must be a float \(N, 3, 32, 32\) tensor"):
        model.compose(torch.zeros(1, 3, 16, 16), ["make it blue"])
    assert len(training_images(_images(5))) == 5
    with pytest.raises(ValueError, match="needs an `image` column"):
        training_images(triplet_dataset.select_columns(["caption"]))
    with pytest.raises(ValueError, match="no image to train on"):
        training_images([])
    with pytest.raises(ValueError, match=r"reads square \(3, S, S\) images.*\(16, 192\)"):  # SigLIP 2's patches
        processor_image_size(lambda images, return_tensors: {"pixel_values": torch.zeros(1, 16, 192)})


def test_the_local_term_is_zero_on_table_rows_and_grows_away_from_them():
    table = torch.randn(10, 8)
    assert nearest_token_loss(table[[3, 7]], table) == 0
    assert nearest_token_loss(table[[3, 7]] + 0.5, table) > 0
