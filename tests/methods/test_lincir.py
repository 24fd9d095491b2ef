import copy
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from modeling_scot import ScotModel
from modeling_scot.methods.keywords import WORLD_LEXICON, PlaceholderTokenizer, keyword_spans, masked_caption_ids
from modeling_scot.methods.lincir_model import LincirConfig, LincirModel
from modeling_scot.methods.lincir_training import (
    LincirTrainingArguments,
    caption_texts,
    check_lincir_output,
    self_masking_loss,
    train_lincir,
)
from tests.conftest import ENCODER_FAMILIES, MAX_TEXT_LENGTH, tuned_copy

CAPTIONS = [
    "a small red circle on the left",
    "a large blue square above a green star",
    "the yellow triangle on the right",
    "a tiny purple cross below a big orange hexagon",
    "a medium white circle and a black square",
    "two red stars on the left",
]


@pytest.fixture(scope="module")
def encoders(tiny_encoder_dirs) -> dict[str, ScotModel]:
    return {family: ScotModel.from_encoder(folder) for family, folder in tiny_encoder_dirs.items()}


def _lincir(encoder, seed=0, **settings) -> LincirModel:
    torch.manual_seed(seed)
    return LincirModel.from_encoder(encoder, **settings)


def _images(count=3, dim=16, seed=0):
    return F.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_phi_maps_the_joint_space_to_one_token_embedding(encoders, family):
    model = _lincir(encoders[family])
    token_dim = encoders[family].encoder_adapter.token_embedding.embedding_dim
    assert (model.config.token_dim, model.config.hidden_dim) == (token_dim, 4 * model.config.embed_dim)
    assert model.phi(_images(4, model.config.embed_dim)).shape == (4, token_dim)
    queries = model.compose(_images(2, model.config.embed_dim), ["make it blue", "add a red star"])
    assert queries.shape == (2, model.config.embed_dim)
    assert torch.allclose(queries.norm(dim=-1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_injection_replaces_exactly_the_placeholder(encoders, word_tokenizer, family):
    adapter = encoders[family].encoder_adapter
    placeholders = PlaceholderTokenizer(word_tokenizer, "$", MAX_TEXT_LENGTH)
    text = "a red circle on the left"
    start = text.index("red")
    batch = masked_caption_ids(placeholders, [text], [[(start, start + 3)]])
    plain = word_tokenizer([text], return_tensors="pt")
    red_id = word_tokenizer.convert_tokens_to_ids("red")
    assert batch.counts().tolist() == [1]
    assert batch.input_ids[0, ~batch.replace[0]].tolist() == [i for i in plain["input_ids"][0].tolist() if i != red_id]
    table = adapter.token_embedding.weight
    with torch.no_grad():
        masked = adapter.text_embeds(batch.input_ids, batch.attention_mask)
        as_is = adapter.text_embeds_with_tokens(
            batch.input_ids, batch.attention_mask, batch.replace, table[placeholders.placeholder_id][None]
        )
        as_red = adapter.text_embeds_with_tokens(
            batch.input_ids, batch.attention_mask, batch.replace, table[red_id][None]
        )
        original = adapter.text_embeds(plain["input_ids"], plain["attention_mask"])
    assert torch.equal(as_is, masked)
    assert torch.allclose(as_red, original, atol=1e-6)
    assert not torch.allclose(as_red, masked, atol=1e-5)


def _training_inputs(model, captions=CAPTIONS):
    batch = masked_caption_ids(model.tokenizer, captions, [keyword_spans(text, WORLD_LEXICON) for text in captions])
    tokens = model.encoder.processor(text=captions, return_tensors="pt")
    with torch.no_grad():
        targets = model.encoder.get_text_features(tokens["input_ids"], tokens["attention_mask"])
    return {"caption_embeds": targets, "input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
            "replace": batch.replace}


def test_the_self_masking_loss_decreases_and_the_encoder_stays_frozen(encoders):
    encoder = encoders["clip"]
    before = {name: value.clone() for name, value in encoder.encoder.state_dict().items()}
    model = _lincir(encoder, dropout=0.0)
    inputs = _training_inputs(model)
    optimizer = torch.optim.AdamW(model.phi.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = self_masking_loss(model.phi, encoder.encoder_adapter, inputs, noise_scale=0.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(parameter.grad is None for parameter in encoder.encoder.parameters())
    assert all(torch.equal(before[name], value) for name, value in encoder.encoder.state_dict().items())


def test_training_noise_is_relative_to_the_embedding(encoders):
    model = _lincir(encoders["clip"], dropout=0.0)
    inputs = _training_inputs(model)
    seen = []
    model.phi.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    torch.manual_seed(0)
    self_masking_loss(model.phi, encoders["clip"].encoder_adapter, inputs, noise_scale=1.0)
    noise = (seen[0] - inputs["caption_embeds"]).norm(dim=-1)
    assert (noise > 0).all() and (noise < 2.5).all()


def _train(encoder, captions, folder, steps, seed=0, resume=False):
    args = LincirTrainingArguments(
        output_dir=str(folder), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3, save_steps=2,
        logging_steps=1, seed=seed, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    return train_lincir(encoder, captions, args, folder, lexicon=WORLD_LEXICON, resume=resume)


def test_train_lincir_saves_phi_only_and_resumes_to_the_same_weights(tiny_clip_dir, triplet_dataset, tmp_path):
    encoder = ScotModel.from_encoder(tiny_clip_dir)
    before = {name: value.clone() for name, value in encoder.encoder.state_dict().items()}
    straight, metrics = _train(encoder, triplet_dataset, tmp_path, steps=4)
    assert metrics["steps"] == 4 and metrics["captions"] == 4  # "a <colour> square" for four colours
    assert set(load_file(tmp_path / "model" / "model.safetensors")) == set(straight.phi.state_dict())
    assert json.loads((tmp_path / "train_results.json").read_text()) == metrics
    assert all(torch.equal(before[name], value) for name, value in encoder.encoder.state_dict().items())
    assert all(parameter.grad is None for parameter in encoder.encoder.parameters())

    checkpoint = tmp_path / "checkpoints" / "checkpoint-2"
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-4")  # as if the run had stopped after step 2
    resumed, metrics = _train(encoder, triplet_dataset, tmp_path, steps=4, resume=True)
    assert metrics["steps"] == 4
    for name, value in straight.phi.state_dict().items():
        assert torch.allclose(resumed.phi.state_dict()[name], value, atol=1e-6), name

    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-4")
    weights = load_file(checkpoint / "model.safetensors")
    save_file({name: value + 0.5 for name, value in weights.items()}, checkpoint / "model.safetensors")
    moved, _ = _train(encoder, triplet_dataset, tmp_path, steps=4, resume=True)  # starts from the altered weights
    assert not torch.allclose(moved.phi.state_dict()["layers.0.weight"], straight.phi.state_dict()["layers.0.weight"])


def test_save_and_load_give_the_same_queries(tiny_clip_dir, tmp_path):
    encoder = ScotModel.from_encoder(tiny_clip_dir)
    model = _lincir(encoder, prompt_template="a photo of $ that {modification}")
    images, texts = _images(), ["make it blue", "add a red star", "remove the circle"]
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "lincir" and config["encoder_name_or_path"] == tiny_clip_dir
    assert set(load_file(tmp_path / "model.safetensors")) == set(model.phi.state_dict())
    expected = model.compose(images, texts)
    for loaded in (LincirModel.from_pretrained(tmp_path, encoder), LincirModel.from_pretrained(tmp_path)):
        assert loaded.config == model.config
        assert torch.allclose(loaded.compose(images, texts), expected, atol=1e-6)
    half = ScotModel.from_encoder(tiny_clip_dir, dtype=torch.bfloat16)
    assert LincirModel.from_pretrained(tmp_path, half).compose(images, texts).shape == expected.shape


def test_a_tuned_text_tower_is_refused_and_a_tuned_image_tower_serves(encoders, tmp_path):
    """phi learns from text embeddings alone: a Text-Anchored-Tuned image tower may feed it, another text tower not."""
    encoder = encoders["clip"]
    _lincir(encoder).save_pretrained(tmp_path / "phi")
    images, texts = _images(), ["make it blue", "add a red star", "remove the circle"]
    tuned_images = tuned_copy(encoder, "vision")
    assert LincirModel.from_pretrained(tmp_path / "phi", tuned_images).compose(images, texts).shape == (3, 16)
    with pytest.raises(ValueError, match=r"is a different one \(their text towers differ: their embeddings of the probe text have cosine"):
        LincirModel.from_pretrained(tmp_path / "phi", tuned_copy(encoder, "text"))
    config_file = tmp_path / "phi" / "config.json"  # a folder written before probes were recorded: sizes and table only
    config = json.loads(config_file.read_text())
    for key in ("image_probe", "text_probe"):
        del config["encoder_signature"][key]
    config_file.write_text(json.dumps(config))
    assert LincirModel.from_pretrained(tmp_path / "phi", tuned_copy(encoder, "text")).compose(images, texts).shape == (3, 16)


def test_another_encoder_is_refused(tiny_clip_dir, tiny_clip_config, tiny_processor, encoders, tmp_path):
    _lincir(encoders["clip"]).save_pretrained(tmp_path / "phi")
    torch.manual_seed(1)
    other = tmp_path / "other-clip"
    CLIPModel(tiny_clip_config).save_pretrained(other)
    tiny_processor.save_pretrained(other)
    with pytest.raises(ValueError, match=f"trained with the encoder '{tiny_clip_dir}'.*'{other}'.*token-embedding"):
        LincirModel.from_pretrained(tmp_path / "phi", str(other))
    with pytest.raises(ValueError, match="model_type 'clip' != 'siglip'"):
        LincirModel.from_pretrained(tmp_path / "phi", encoders["siglip"])


def test_long_modifications_are_cut_with_one_warning_and_keep_the_placeholder(encoders):
    model = _lincir(encoders["clip"])
    texts = ["make it " + "red " * 30, "make it blue", "swap the circle and the square " * 5]
    message = f"2 of 3 modifications were cut to fit the text tower's {MAX_TEXT_LENGTH} tokens"
    with pytest.warns(UserWarning, match=message) as caught:
        queries = model.compose(_images(), texts)
    assert len(caught) == 1 and torch.isfinite(queries).all()
    batch = model.tokenizer(model.prompt_pieces(texts))
    assert batch.counts().tolist() == [1, 1, 1] and batch.input_ids.shape[1] == MAX_TEXT_LENGTH


def test_bad_inputs_are_named(encoders, tmp_path):
    model = _lincir(encoders["clip"])
    with pytest.raises(ValueError, match="modifications must be a list of 3 strings"):
        model.compose(_images(), ["make it blue"])
    with pytest.raises(ValueError, match=r"image_embeds must have shape \(N, 16\)"):
        model.compose(_images(3, 8), ["a", "b", "c"])
    with pytest.raises(ValueError, match="prompt_template must hold the placeholder"):
        LincirConfig(embed_dim=16, token_dim=32, prompt_template="{modification} $")
    with pytest.raises(ValueError, match="dropout"):
        LincirConfig(embed_dim=16, token_dim=32, dropout=1.0)
    with pytest.raises(ValueError, match=r"unknown LinCIR setting\(s\) \['temperature'\]"):
        LincirModel.from_encoder(encoders["clip"], temperature=0.1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LincirModel.from_pretrained(tmp_path / "missing")
    model.save_pretrained(tmp_path / "phi")
    (tmp_path / "phi" / "model.safetensors").rename(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        LincirModel.from_pretrained(tmp_path / "phi", encoders["clip"])
    (tmp_path / "phi" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        LincirModel.from_pretrained(tmp_path / "phi", encoders["clip"])
    (tmp_path / "phi" / "config.json").write_text(json.dumps({"model_type": "scot"}))
    with pytest.raises(ValueError, match="is not a LinCIR config"):
        LincirModel.from_pretrained(tmp_path / "phi", encoders["clip"])
    with pytest.raises(ValueError, match="is not a saved LinCIR model"):
        check_lincir_output(tmp_path / "phi")


def test_caption_texts(triplet_dataset):
    texts = [" a red square", "a red square", "", None, "a blue square"]
    assert caption_texts(texts) == ["a red square", "a blue square"]
    assert len(caption_texts(triplet_dataset)) == 4
    with pytest.raises(ValueError, match="needs a column caption or modified_caption"):
        caption_texts(triplet_dataset.select_columns(["modification"]))
    with pytest.raises(ValueError, match="every caption is empty"):
        caption_texts(["", "  "])
    with pytest.raises(ValueError, match="caption 1 is not a string: 3"):
        caption_texts(["a", 3])
