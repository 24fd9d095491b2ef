"""Versioned chat prompts that ask an LLM for one triplet as a JSON object.

The prompt shows a few worked examples (few-shot) and asks for a JSON object with the keys
`modification`, `modified_caption` and `hard_negatives` (k captions close to the modified caption that
do not satisfy the modification). Every change to the wording or the examples gets a new
`PROMPT_VERSION`, which is stored with each generated triplet.
"""

from __future__ import annotations

import hashlib
import json

PROMPT_VERSION = "scot-triplets-v1"

SYSTEM_PROMPT = """You write training data for composed image retrieval.
You are given the caption of an image and a kind of change.
Invent one modification that a person could ask for and describe the image after that modification.
Reply with exactly one JSON object and nothing else, with these keys:
"modification": a short instruction that describes the change, at most 20 words;
"modified_caption": the caption of the modified image, in the style of the given caption;
"hard_negatives": a list of {k} captions that are very close to modified_caption but do not satisfy the modification.
Good hard negatives apply the change to the wrong object, use a wrong value, or miss the change."""

EDIT_KINDS: tuple[str, ...] = (
    "change an attribute of an object such as its colour, material or size",
    "add an object",
    "remove an object",
    "change the number of objects",
    "change the place or the background",
    "change what a person or animal is doing",
    "replace an object with a different object",
    "change the time of day, the weather or the style",
)
"""Kinds of change; each request asks for one, so that the variants of a caption differ."""

FEW_SHOT_EXAMPLES: tuple[dict, ...] = (
    {
        "caption": "A man riding a red bicycle down a city street.",
        "kind": EDIT_KINDS[0],
        "modification": "make the bicycle blue",
        "modified_caption": "A man riding a blue bicycle down a city street.",
        "hard_negatives": [
            "A man riding a red bicycle down a city street.",
            "A man in blue riding a red bicycle down a city street.",
            "A man riding a blue motorcycle down a city street.",
            "A man pushing a blue bicycle down a country road.",
            "A woman riding a green bicycle down a city street.",
        ],
    },
    {
        "caption": "Two dogs playing with a frisbee on the grass.",
        "kind": EDIT_KINDS[3],
        "modification": "only one dog should be there",
        "modified_caption": "A dog playing with a frisbee on the grass.",
        "hard_negatives": [
            "Three dogs playing with a frisbee on the grass.",
            "Two dogs playing with a ball on the grass.",
            "Two cats playing with a frisbee on the grass.",
            "A dog sleeping next to a frisbee on the grass.",
            "Two dogs lying on the grass.",
        ],
    },
    {
        "caption": "A plate of pasta next to a glass of wine on a wooden table.",
        "kind": EDIT_KINDS[2],
        "modification": "take away the wine",
        "modified_caption": "A plate of pasta on a wooden table.",
        "hard_negatives": [
            "A glass of wine on a wooden table.",
            "A plate of pasta next to a glass of water on a wooden table.",
            "An empty plate next to a glass of wine on a wooden table.",
            "A plate of pasta next to a glass of wine on a marble table.",
            "A bowl of soup on a wooden table.",
        ],
    },
)


def edit_kind(caption: str, variant: int) -> str:
    """The kind of change asked for `caption`: variants take the kinds in turn, from a start that the caption picks."""
    start = int.from_bytes(hashlib.blake2b(caption.encode("utf-8"), digest_size=4).digest(), "big")
    return EDIT_KINDS[(start + variant) % len(EDIT_KINDS)]


def _user_message(caption: str, kind: str) -> str:
    return f"Caption: {caption}\nKind of change: {kind}"


def _answer(example: dict, num_hard_negatives: int) -> str:
    answer = {key: example[key] for key in ("modification", "modified_caption")}
    answer["hard_negatives"] = example["hard_negatives"][:num_hard_negatives]
    return json.dumps(answer, ensure_ascii=False)


def build_messages(caption: str, variant: int, num_hard_negatives: int) -> list[dict[str, str]]:
    """The chat messages (system, few-shot user/assistant pairs, the request) asking for one triplet of `caption`."""
    if num_hard_negatives < 0:
        raise ValueError(f"num_hard_negatives must be >= 0, got {num_hard_negatives}")
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(k=num_hard_negatives)}]
    for example in FEW_SHOT_EXAMPLES:
        messages.append({"role": "user", "content": _user_message(example["caption"], example["kind"])})
        messages.append({"role": "assistant", "content": _answer(example, num_hard_negatives)})
    messages.append({"role": "user", "content": _user_message(caption, edit_kind(caption, variant))})
    return messages


def prompt_texts() -> tuple[list[str], list[str]]:
    """The texts an answer must not copy: the few-shot examples' captions and answers, and the instruction lines."""
    examples = [
        text
        for example in FEW_SHOT_EXAMPLES
        for text in (example["caption"], example["modification"], example["modified_caption"], *example["hard_negatives"])
    ]
    instructions = [line for line in SYSTEM_PROMPT.format(k="k").splitlines() if len(line.split()) >= 6]
    return examples, instructions


__all__ = ["EDIT_KINDS", "FEW_SHOT_EXAMPLES", "PROMPT_VERSION", "SYSTEM_PROMPT", "build_messages", "edit_kind", "prompt_texts"]
