"""Odd texts through `ScotProcessor` and the text towers: a result, or a ValueError naming the text.

`ODD_TEXTS` also seeds the text corpus of bench/reliability_inputs.py.
"""

from __future__ import annotations

import os
import re
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModel, CLIPImageProcessor

from modeling_scot.processing_scot import ScotProcessor
from tests.conftest import MAX_TEXT_LENGTH

NOT_UTF8 = os.fsdecode(b"make it r\xe9d")
"""What Python makes of a Latin-1 command-line argument on a UTF-8 system: 'make it r\\udce9d'."""

ODD_TEXTS: dict[str, str] = {
    "empty": "",
    "whitespace-only": " \t\n\u3000 ",
    "ten-thousand-characters": "make it red " * 834,
    "control-characters": "make\x00it\x07red\x1b[0m\x7f",
    "right-to-left": "\u202eاجعلها حمراء\u202c",
    "hebrew": "תעשה את זה כחול",
    "cjk": "把它变成红色的圆形",
    "emoji": "make it 🔴 and add a ⭐ 👩\u200d👩\u200d👧",
    "combining-marks": "ma\u0301ke i\u0308t re\u0303d",
    "zero-width": "make\u200bit\u200dred\ufeff",
    "private-use-and-noncharacters": "\ue000\U0010fffd\ufffe\uffff",
    "replacement-character": "make it r\ufffdd",
    "newlines": "make it\nred\r\nnow",
    "not-utf8-from-command-line": NOT_UTF8,
}
UNICODE_TEXTS = {key: text for key, text in ODD_TEXTS.items() if key != "not-utf8-from-command-line"}


@pytest.fixture(scope="module")
def processor(word_tokenizer) -> ScotProcessor:
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return ScotProcessor(image_processor, word_tokenizer)


@pytest.mark.parametrize("text", UNICODE_TEXTS.values(), ids=UNICODE_TEXTS.keys())
@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_odd_texts_tokenise(word_tokenizer, text, padding):
    processor = ScotProcessor(CLIPImageProcessor(), word_tokenizer, text_padding=padding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the long text warns; tested below
        batch = processor(text=[text, "make it red"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 2 and ids.shape[1] <= MAX_TEXT_LENGTH and ids.dtype == torch.long
    length = int(mask[0].sum())
    assert ids[0, 0] == word_tokenizer.bos_token_id and ids[0, length - 1] == word_tokenizer.eos_token_id


@pytest.mark.parametrize("text", ["", " ", " \t\n\u3000 ", "\x00\x1f\x7f"], ids=["empty", "space", "blank", "controls"])
def test_blank_text_encodes_as_the_empty_text(processor, word_tokenizer, text):
    """A blank modification asks for no change: only the special tokens, whatever the whitespace."""
    ids = processor(text=text)["input_ids"]
    assert ids.tolist() == [[word_tokenizer.bos_token_id, word_tokenizer.eos_token_id]]


def test_control_characters_separate_words(processor):
    assert torch.equal(processor(text="make\x00it\x07red")["input_ids"], processor(text="make it red")["input_ids"])


def test_format_characters_are_kept(processor, word_tokenizer):
    """Zero-width joiners hold emoji sequences together and marks set direction: not control characters."""
    tokens = word_tokenizer.convert_ids_to_tokens(processor(text="red\u200dblue")["input_ids"][0].tolist())
    assert tokens == ["<bos>", "<unk>", "<eos>"]


def test_long_text_is_truncated_with_one_warning(processor, word_tokenizer):
    long_text = ODD_TEXTS["ten-thousand-characters"]
    with pytest.warns(UserWarning) as recorded:
        batch = processor(text=["make it red", long_text, long_text])
    assert [str(warning.message) for warning in recorded] == [
        f"text longer than the tokenizer's {MAX_TEXT_LENGTH} tokens was truncated: the text encoder sees only its "
        f"first {MAX_TEXT_LENGTH} tokens"
    ]
    assert recorded[0].filename == __file__  # points at the caller
    assert batch["input_ids"].shape == (3, MAX_TEXT_LENGTH)
    assert batch["input_ids"][1, -1] == word_tokenizer.eos_token_id


def test_text_of_exactly_the_maximum_length_does_not_warn(processor):
    exact = " ".join(["red"] * (MAX_TEXT_LENGTH - 2))  # with <bos> and <eos>: MAX_TEXT_LENGTH tokens
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert processor(text=exact)["attention_mask"].sum() == MAX_TEXT_LENGTH


@pytest.mark.parametrize(
    ("text", "label"),
    [
        pytest.param(NOT_UTF8, "text", id="str"),
        pytest.param(["make it red", NOT_UTF8], r"text\[1\]", id="list"),
        pytest.param("\ud83d", "text", id="lone-high-surrogate"),
    ],
)
def test_text_that_is_not_unicode_is_named(processor, text, label):
    expected = rf"^{label} holds '\\ud.{{3}}' at position \d+, which is not a Unicode character: .* as UTF-8$"
    with pytest.raises(ValueError, match=expected):
        processor(text=text)


def test_command_line_text_names_the_bytes_position(processor):
    with pytest.raises(ValueError, match=r"^text holds '\\udce9' at position 9,"):
        processor(text=NOT_UTF8)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_odd_texts_reach_the_text_tower(tiny_encoder_dirs, family, word_tokenizer):
    """Every odd text gives finite text features from the tiny CLIP and SigLIP towers."""
    processor = ScotProcessor.from_pretrained(tiny_encoder_dirs[family])
    processor.text_padding = "max_length"  # SigLIP pools the last position
    model = AutoModel.from_pretrained(tiny_encoder_dirs[family]).eval()
    texts = list(UNICODE_TEXTS.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        batch = processor(text=texts)
    with torch.inference_mode():
        features = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    features = features if isinstance(features, torch.Tensor) else features.pooler_output
    assert features.shape[0] == len(texts) and torch.isfinite(features).all()


ODD_CHARACTERS = st.characters(categories=["Cc", "Cf", "Cs", "Co", "Lo", "Ll", "Lu", "Mn", "So", "Zs", "Zl", "Nd", "Po"])
SURROGATES_AND_FRIENDS = st.sampled_from(["\udce9", "\ud800", "\udfff", "\x00", "\u202e", "\u200d", "\U0001f534", " "])


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(ODD_CHARACTERS | SURROGATES_AND_FRIENDS, max_size=60), min_size=1, max_size=3))
def test_any_string_tokenises_or_is_named(processor, texts):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ids = processor(text=texts)["input_ids"]
    except ValueError as error:
        assert re.match(r"text\[\d\] holds '\\ud[89a-f][0-9a-f]{2}' at position \d+", str(error)), str(error)
        assert any(_has_surrogate(text) for text in texts)
        return
    assert ids.shape[0] == len(texts) and 2 <= ids.shape[1] <= MAX_TEXT_LENGTH
    assert not any(_has_surrogate(text) for text in texts)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(character) <= 0xDFFF for character in text)
