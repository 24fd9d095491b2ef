"""A small lowercase word-level tokenizer for CLIP-style text towers built from scratch."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"


def _normalize_word(word: str) -> str:
    """Apply the tokenizer's normalisation (NFKC + lowercase) to one vocabulary word."""
    normalized = unicodedata.normalize("NFKC", word).lower()
    if not normalized or any(char.isspace() for char in normalized):
        raise ValueError(f"vocabulary words must be non-empty and contain no whitespace, got {word!r}")
    return normalized


def build_vocab(words: Iterable[str]) -> dict[str, int]:
    """Map tokens to ids: `<pad>`, `<unk>`, `<bos>`, the unique words in first-seen order, then `<eos>` (largest id)."""
    ordered = dict.fromkeys([PAD_TOKEN, UNK_TOKEN, BOS_TOKEN])
    ordered.update(dict.fromkeys(_normalize_word(word) for word in words))
    ordered.pop(EOS_TOKEN, None)
    ordered[EOS_TOKEN] = None
    return {token: index for index, token in enumerate(ordered)}


def _build_backend(vocab: dict[str, int]) -> Tokenizer:
    """Build the `tokenizers` pipeline: WordLevel model, NFKC+lowercase, whitespace/punctuation split, bos/eos."""
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} $B:1 {EOS_TOKEN}:1",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return backend


def build_word_level_tokenizer(words: Iterable[str], model_max_length: int = 32) -> PreTrainedTokenizerFast:
    """Build a deterministic lowercase word-level tokenizer that wraps every sequence in `<bos> ... <eos>`.

    `<eos>` has the largest id (``vocab_size - 1``) and padding uses `<pad>` (id 0), so the first eos position
    marks the real end of a sequence. Truncation to `model_max_length` keeps the closing `<eos>`.
    """
    if model_max_length < 2:
        raise ValueError(f"model_max_length must be at least 2 to hold <bos> and <eos>, got {model_max_length}")
    return PreTrainedTokenizerFast(
        tokenizer_object=_build_backend(build_vocab(words)),
        model_max_length=model_max_length,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
        split_special_tokens=True,
    )
