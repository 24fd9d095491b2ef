"""One small adapter per dual-encoder family: what SCOT and its sibling methods need from a frozen encoder.

An adapter wraps a loaded transformers model (CLIP, SigLIP, SigLIP 2) and gives
- L2-normalised pooled image and text embeddings in the joint space (float32),
- image embeddings as a set of vectors, (B, K, D): K = 1 for pooled families; room for multi-vector
  encoders such as BLIP-2, whose Q-Former gives one vector per query token,
- the token-embedding table of the text tower, and text embeddings with some token embeddings replaced
  (what pseudo-token methods such as LinCIR and ISA need).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_scot import check_encoder_family


def pooled_embedding(output, what: str) -> torch.Tensor:
    """The projected embedding of a `get_*_features` call, whatever its return type."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise TypeError(f"{what} returned {type(output).__name__} without a pooled embedding (pooler_output)")


class DualEncoderAdapter:
    """The interface over a frozen dual encoder (`model`), for the families whose image and text towers each
    pool to one projected vector (`get_image_features` / `get_text_features`)."""

    family: ClassVar[str] = ""
    multi_vector: ClassVar[bool] = False
    """Whether `image_vectors` gives more than one vector per image."""

    def __init__(self, model: PreTrainedModel):
        self.model = model

    @property
    def text_tower(self) -> nn.Module:
        return self.model.text_model

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.vision_model

    @property
    def vocab_size(self) -> int:
        return self.model.config.text_config.vocab_size

    @property
    def token_embedding(self) -> nn.Embedding:
        """The text tower's token-embedding table (vocab, hidden)."""
        return self.text_tower.embeddings.token_embedding

    def image_embeds(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, D) L2-normalised pooled image embeddings, float32."""
        output = self.model.get_image_features(pixel_values=pixel_values.to(self.model.dtype), **image_kwargs)
        return F.normalize(pooled_embedding(output, "get_image_features").float(), dim=-1)

    def image_vectors(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, K, D) L2-normalised image vectors; K = 1 here (the pooled embedding)."""
        return self.image_embeds(pixel_values, **image_kwargs)[:, None]

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) L2-normalised pooled text embeddings, float32."""
        output = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(pooled_embedding(output, "get_text_features").float(), dim=-1)

    def text_embeds_with_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        replace: torch.Tensor,
        token_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """(B, D) text embeddings where the input tokens at `replace` (B, L bool) take the rows of `token_embeds`
        (one (hidden,) row per True entry, in row-major order) instead of their table embeddings. Gradients flow
        into `token_embeds`; the encoder stays frozen. Pooling still reads `input_ids` (the end-of-text position)."""
        if replace.shape != input_ids.shape:
            raise ValueError(f"replace has shape {tuple(replace.shape)}, input_ids {tuple(input_ids.shape)}")
        count, hidden = int(replace.sum()), self.token_embedding.embedding_dim
        if tuple(token_embeds.shape) != (count, hidden):
            raise ValueError(f"token_embeds must have shape ({count}, {hidden}) for {count} replaced tokens, "
                             f"got {tuple(token_embeds.shape)}")
        with self._replaced_tokens(replace, token_embeds):
            return self.text_embeds(input_ids, attention_mask)

    @contextmanager
    def _replaced_tokens(self, replace: torch.Tensor, token_embeds: torch.Tensor) -> Iterator[None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            output[replace.to(output.device)] = token_embeds.to(output.device, output.dtype)
            return output

        handle = self.token_embedding.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


class ClipAdapter(DualEncoderAdapter):
    """OpenAI CLIP and its re-trainings (`CLIPModel`): text pooled at the end-of-text token."""

    family = "clip"


class SiglipAdapter(DualEncoderAdapter):
    """SigLIP (`SiglipModel`): sigmoid-trained towers, text pooled at the last position."""

    family = "siglip"


class Siglip2Adapter(DualEncoderAdapter):
    """SigLIP 2 (`Siglip2Model`): as SigLIP, with native-resolution images (`pixel_attention_mask`,
    `spatial_shapes` pass through `image_kwargs`)."""

    family = "siglip2"


ADAPTERS: dict[str, type[DualEncoderAdapter]] = {
    adapter.family: adapter for adapter in (ClipAdapter, SiglipAdapter, Siglip2Adapter)
}


def adapter_for(model: PreTrainedModel, source: str = "the encoder") -> DualEncoderAdapter:
    """The adapter of `model`'s family; a ValueError names the family and the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    check_encoder_family(model_type or type(model).__name__, source)
    return ADAPTERS[model_type](model)


__all__ = [
    "ADAPTERS",
    "ClipAdapter",
    "DualEncoderAdapter",
    "Siglip2Adapter",
    "SiglipAdapter",
    "adapter_for",
    "pooled_embedding",
]
