"""Triplets from a local causal LM: a `transformers` text-generation pipeline over the model's chat template."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import pipeline, set_seed

from .chat import ChatBackend, Completion


def _dtype(name: str) -> torch.dtype | str:
    if name == "auto":
        return name
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be 'auto' or a torch dtype name such as 'bfloat16', got {name!r}")
    return dtype


class TransformersBackend(ChatBackend):
    """Writes triplets with any causal LM with a chat template, from a Hub id or a local folder.

    The model's weights load from safetensors files only, and no code from its repo runs.

    Args:
        model: Hub id or folder of an instruction-tuned causal LM.
        dtype: `auto` or a torch dtype name (`bfloat16`, `float16`, `float32`).
        device_map: passed to `from_pretrained` (e.g. `auto` to spread the model over the GPUs).
        batch_size: prompts generated together (left-padded).
        The other arguments are those of [`ChatBackend`]; a batch is sampled with the seed of its first request.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device_map: str | None = None,
        batch_size: int = 8,
        **chat_options: Any,
    ) -> None:
        super().__init__(model, **chat_options)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
            raise FileNotFoundError(f"model folder not found: {model}")
        self.batch_size = batch_size
        self.dtype = dtype
        self.pipeline = pipeline(
            "text-generation",
            model=str(Path(model).expanduser()) if model.startswith("~") else model,
            dtype=_dtype(dtype),
            device_map=device_map,
            trust_remote_code=False,
            model_kwargs={"use_safetensors": True},
        )
        tokenizer = self.pipeline.tokenizer
        if tokenizer is None or not tokenizer.chat_template:
            raise ValueError(f"model {model!r} has no tokenizer with a chat template; use an instruction-tuned model")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "dtype": self.dtype}

    def complete(self, conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int]) -> list[Completion]:
        if not conversations:
            return []
        set_seed(seeds[0])
        sampling = (
            dict(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            if self.temperature > 0
            else dict(do_sample=False)
        )
        outputs = self.pipeline(
            list(conversations),
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            return_full_text=False,
            **sampling,
        )
        return [Completion(output[0]["generated_text"]) for output in outputs]


__all__ = ["TransformersBackend"]
