import copy
import random

import pytest
import torch

from modeling_scot.methods.keywords import (
    WORLD_LEXICON,
    PlaceholderTokenizer,
    heuristic_keyword_spans,
    keyword_spans,
    lexicon_keyword_spans,
    masked_caption_ids,
    masked_segments,
    spacy_pipeline,
)
from modeling_scot.world import SHAPES, caption, read_attributes, sample_scene
from tests.conftest import MAX_TEXT_LENGTH


def _texts(text, spans):
    return [text[start:end] for start, end in spans]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a man riding a red bike on the beach", ["a man", "a red bike", "the beach"]),
        ("Two dogs playing in the snow, a red ball", ["Two dogs", "the snow", "a red ball"]),
        (
            "the black cat is sleeping on a wooden table next to the window",
            ["the black cat", "a wooden table", "the window"],
        ),
        ("3 people, street market at night", ["3 people", "street market", "night"]),
        ("a cat the dog", ["a cat", "the dog"]),
        ("this is the one", []),
        ("", []),
    ],
)
def test_heuristic_spans_of_real_style_captions(text, expected):
    assert _texts(text, heuristic_keyword_spans(text)) == expected


def test_without_spacy_keyword_spans_is_the_heuristic():
    if spacy_pipeline() is not None:
        pytest.skip("spaCy and its English model are installed: keyword_spans uses the tagger")
    text = "a man riding a red bike on the beach"
    assert keyword_spans(text) == heuristic_keyword_spans(text)


def test_spacy_spans_when_installed():
    if spacy_pipeline() is None:
        pytest.skip("spaCy or its en_core_web_sm model is not installed")
    text = "a man riding a red bike on the beach"
    assert _texts(text, keyword_spans(text)) == ["a man", "a red bike", "the beach"]


def test_world_lexicon_spans_of_a_canonical_caption():
    text = "a small solid red circle in the top left and a large outlined blue square in the center"
    expected = ["a small solid red circle", "the top left", "a large outlined blue square", "the center"]
    assert _texts(text, keyword_spans(text, WORLD_LEXICON)) == expected
    assert keyword_spans("a picture of the scene", WORLD_LEXICON) == []


def test_world_lexicon_spans_name_each_object_of_paraphrased_captions():
    rng = random.Random(0)
    for _ in range(200):
        scene = sample_scene(rng)
        text = caption(scene, rng)
        spans = _texts(text, lexicon_keyword_spans(text, WORLD_LEXICON))
        objects = [span for span in spans if span.split()[-1] in SHAPES]
        places = [span for span in spans if span not in objects]
        assert len(objects) == len(scene.objects), text
        assert all(span.split()[0] in ("a", "an") for span in objects), text
        assert all(span.startswith("the ") for span in places), text
        named = sorted((a["shape"], a["colour"], a["size"], a["style"]) for a in map(read_attributes, objects))
        assert named == sorted((o.shape, o.colour, o.size, o.style) for o in scene.objects), text


def test_masked_segments():
    text = "a man riding a red bike"
    assert masked_segments(text, heuristic_keyword_spans(text)) == ["", " riding ", ""]
    assert masked_segments(text, []) == [text]
    with pytest.raises(ValueError, match="out of order"):
        masked_segments(text, [(4, 9), (0, 3)])


def _placeholders(tokenizer, **kwargs):
    return PlaceholderTokenizer(tokenizer, "$", MAX_TEXT_LENGTH, **kwargs)


def test_texts_without_placeholders_tokenise_as_the_tokenizer_does(word_tokenizer):
    texts = ["a red circle on the left", "make it blue", "a"]
    batch = _placeholders(word_tokenizer)([[text] for text in texts])
    plain = word_tokenizer(texts, padding="longest", return_tensors="pt")
    assert torch.equal(batch.input_ids, plain["input_ids"])
    assert torch.equal(batch.attention_mask, plain["attention_mask"])
    assert not batch.replace.any() and batch.truncated == []


def test_each_span_becomes_one_placeholder(word_tokenizer):
    placeholders = _placeholders(word_tokenizer)
    captions = ["a small red circle on the left and a blue square", "the star"]
    spans = [keyword_spans(text, WORLD_LEXICON) for text in captions]
    batch = masked_caption_ids(placeholders, captions, spans)
    assert batch.counts().tolist() == [3, 1]
    words = ["<bos>", "$", "on", "$", "and", "$", "<eos>"]
    expected = word_tokenizer.convert_tokens_to_ids(words)
    expected[1] = expected[3] = expected[5] = placeholders.placeholder_id
    assert batch.input_ids[0].tolist() == expected
    assert batch.replace[0].tolist() == [False, True, False, True, False, True, False]
    with pytest.raises(ValueError, match="2 captions but 1 span lists"):
        masked_caption_ids(placeholders, captions, spans[:1])


def test_too_long_texts_are_cut_after_the_placeholder(word_tokenizer):
    placeholders = _placeholders(word_tokenizer, padding="max_length")
    batch = placeholders([["a photo of", "make it " + "red " * 40], ["$ is", "a circle"]])
    assert batch.truncated == [0]
    assert batch.input_ids.shape == (2, MAX_TEXT_LENGTH)
    assert batch.counts().tolist() == [1, 1]
    assert batch.input_ids[0, -1].item() == word_tokenizer.eos_token_id
    assert batch.input_ids[1, -1].item() == word_tokenizer.pad_token_id


def test_placeholder_checks(word_tokenizer):
    with pytest.raises(ValueError, match="must be one token"):
        PlaceholderTokenizer(word_tokenizer, "red circle", MAX_TEXT_LENGTH)
    with pytest.raises(ValueError, match="leaves no room"):
        PlaceholderTokenizer(word_tokenizer, "$", 2)
    with pytest.raises(ValueError, match="padding"):
        PlaceholderTokenizer(word_tokenizer, "$", MAX_TEXT_LENGTH, padding="left")


def test_no_attention_mask_for_tokenizers_without_one(word_tokenizer):
    tokenizer = copy.deepcopy(word_tokenizer)
    tokenizer.model_input_names = ["input_ids"]
    assert _placeholders(tokenizer)([["a", "circle"]]).attention_mask is None
