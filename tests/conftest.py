"""Tiny dual-encoder configs and saved folders built in code: no network, no downloaded weights."""

from __future__ import annotations

import copy
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SCOT_HOME", tempfile.mkdtemp(prefix="scot-home-"))  # never the user's ~/.cache/scot
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import (
    AutoModel,
    BertTokenizer,
    Blip2Config,
    BlipImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    SiglipConfig,
    Siglip2Config,
)

from modeling_scot import ScotModel, ScotProcessor
from modeling_scot.encoders import ADAPTERS
from modeling_scot.word_tokenizer import build_word_level_tokenizer

WORDS = (
    "a an the photo of with and in on left right above below small large big tiny medium "
    "red green blue yellow purple orange black white circle square triangle star cross hexagon "
    "make it change to add remove move swap same but now is are one two three shape colour"
).split()
MAX_TEXT_LENGTH = 16
IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def word_tokenizer():
    return build_word_level_tokenizer(WORDS, model_max_length=MAX_TEXT_LENGTH)


def _text_tower(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TEXT_LENGTH,
        pad_token_id=0,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
    )


def _vision_tower() -> dict:
    return dict(
        image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )


@pytest.fixture(scope="session")
def tiny_clip_config(word_tokenizer) -> CLIPConfig:
    return CLIPConfig(text_config=_text_tower(len(word_tokenizer)), vision_config=_vision_tower(), projection_dim=16)


@pytest.fixture(scope="session")
def tiny_siglip_config(word_tokenizer) -> SiglipConfig:
    return SiglipConfig(text_config=_text_tower(len(word_tokenizer)), vision_config=_vision_tower())


@pytest.fixture(scope="session")
def tiny_siglip2_config(word_tokenizer) -> Siglip2Config:
    vision = _vision_tower()
    del vision["image_size"]
    return Siglip2Config(text_config=_text_tower(len(word_tokenizer)), vision_config=dict(vision, num_patches=16))


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BLIP2_QUERY_TOKENS = 4


@pytest.fixture(scope="session")
def bert_tokenizer() -> BertTokenizer:
    """A BERT tokenizer over the test words, as BLIP-2's Q-Former reads text ([CLS] first, pooled there)."""
    vocab = {token: number for number, token in enumerate((*BERT_SPECIAL_TOKENS, *WORDS))}
    return BertTokenizer(vocab=vocab, model_max_length=MAX_TEXT_LENGTH)


@pytest.fixture(scope="session")
def tiny_blip2_config(word_tokenizer, bert_tokenizer) -> Blip2Config:
    """A tiny `Blip2ForImageTextRetrieval` config: vision 2 layers, Q-Former 2 layers with a text path and
    `BLIP2_QUERY_TOKENS` query tokens; its vocabulary covers both test tokenizers."""
    qformer = dict(_text_tower(max(len(word_tokenizer), len(bert_tokenizer))), cross_attention_frequency=1)
    for name in ("bos_token_id", "eos_token_id"):
        del qformer[name]
    return Blip2Config(
        vision_config=_vision_tower(),
        qformer_config=dict(qformer, use_qformer_text_input=True),
        text_config=dict(model_type="opt", vocab_size=8, hidden_size=8, ffn_dim=16, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=8),
        num_query_tokens=BLIP2_QUERY_TOKENS,
        image_text_hidden_size=16,
    )


@pytest.fixture(scope="session")
def tiny_blip2_processor(bert_tokenizer) -> ScotProcessor:
    return ScotProcessor(image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
                         tokenizer=bert_tokenizer)


@pytest.fixture(scope="session")
def tiny_processor(word_tokenizer) -> ScotProcessor:
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return ScotProcessor(image_processor=image_processor, tokenizer=word_tokenizer)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory, tiny_clip_config, tiny_processor) -> str:
    """A saved random CLIP with its processor: stands in for a Hub repo such as openai/clip-vit-large-patch14."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(tiny_clip_config).save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return str(folder)


ENCODER_FAMILIES = ("clip", "siglip", "siglip2", "blip-2")


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory, tiny_blip2_config, tiny_blip2_processor) -> str:
    """A saved random BLIP-2 retrieval model with its processor (BLIP image processor, BERT tokenizer): stands in
    for Salesforce/blip2-itm-vit-g."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-blip-2")
    ADAPTERS["blip-2"].build(tiny_blip2_config).save_pretrained(folder)
    tiny_blip2_processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder_dirs(
    tmp_path_factory, tiny_clip_dir, tiny_siglip_config, tiny_siglip2_config, tiny_processor, tiny_blip2_dir
) -> dict:
    """A saved random encoder with its processor per family: stand-ins for CLIP, SigLIP, SigLIP 2 and BLIP-2 Hub
    repos."""
    dirs = {"clip": tiny_clip_dir, "blip-2": tiny_blip2_dir}
    for family, config in (("siglip", tiny_siglip_config), ("siglip2", tiny_siglip2_config)):
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"tiny-{family}")
        AutoModel.from_config(config).save_pretrained(folder)
        tiny_processor.save_pretrained(folder)
        dirs[family] = str(folder)
    return {family: dirs[family] for family in ENCODER_FAMILIES}


def family_inputs(family: str, word_tokenizer, texts=("make it blue", "a red circle on the left")) -> dict:
    """Model inputs for a family's tiny encoder: images (SigLIP 2: patches, their mask and grid shapes) and texts
    padded to the full length (SigLIP pools the last position)."""
    generator = torch.Generator().manual_seed(3)
    tokens = word_tokenizer(list(texts), padding="max_length", max_length=MAX_TEXT_LENGTH, return_tensors="pt")
    inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    if family != "siglip2":
        return inputs | {"pixel_values": torch.randn(len(texts), 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}
    mask = torch.ones(len(texts), 16, dtype=torch.long)
    mask[-1, 12:] = 0
    shapes = torch.tensor([[4, 4]] * (len(texts) - 1) + [[3, 4]])
    patches = torch.randn(len(texts), 16, 3 * 8 * 8, generator=generator)
    return inputs | {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}


@pytest.fixture
def scot_model(tiny_clip_dir) -> ScotModel:
    torch.manual_seed(0)
    return ScotModel.from_clip(tiny_clip_dir, combiner_dropout=0.0)


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


@pytest.fixture(scope="session")
def triplet_dataset():
    """A small triplet dataset in the package's record format, with images as an `Image` feature."""
    from datasets import Dataset, Features, Image as ImageFeature, Sequence, Value
    from PIL import Image

    rows = []
    names = list(COLOURS)
    for i, source in enumerate(names):
        image = Image.new("RGB", (40, 40), COLOURS[source])
        for j, target in enumerate(n for n in names if n != source):
            rows.append(
                {
                    "source_id": f"img-{i}",
                    "image": image,
                    "caption": f"a {source} square",
                    "modification": f"make it {target}",
                    "modified_caption": f"a {target} square",
                    "hard_negatives": [f"a {n} square" for n in names if n not in (source, target)][: j + 1],
                }
            )
    features = Features(
        {
            "source_id": Value("string"),
            "image": ImageFeature(),
            "caption": Value("string"),
            "modification": Value("string"),
            "modified_caption": Value("string"),
            "hard_negatives": Sequence(Value("string")),
        }
    )
    return Dataset.from_list(rows, features=features)


def tuned_copy(encoder: ScotModel, tower: str, scale: float = 0.1) -> ScotModel:
    """`encoder` with every weight of one tower but the token table moved by `scale` of its mean size, as a
    fine-tune (or Text-Anchored Tuning of the image tower) would move it."""
    tuned = copy.deepcopy(encoder)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, weight in getattr(tuned.encoder_adapter, f"{tower}_tower").named_parameters():
            if "token_embedding" not in name:
                weight.add_(scale * weight.abs().mean() * torch.randn(weight.shape, generator=generator))
    return tuned

