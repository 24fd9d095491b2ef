"""One small adapter per dual-encoder family: what SCOT and its sibling methods need from a frozen encoder.

An adapter wraps a loaded transformers model (CLIP, SigLIP, SigLIP 2, BLIP-2's retrieval model) and gives
- L2-normalised pooled image and text embeddings in the joint space (float32),
- image embeddings as a set of vectors, (B, K, D): K = 1 for pooled families, K = the number of query tokens
  for BLIP-2, whose Q-Former gives one vector per query token (its pooled embedding is their mean),
- the token-embedding table of the text tower, and text embeddings with some token embeddings replaced
  (what pseudo-token methods such as LinCIR and ISA need).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Blip2ForImageTextRetrieval, PreTrainedConfig, PreTrainedModel

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
    model_class: ClassVar[type[PreTrainedModel] | type[AutoModel]] = AutoModel
    """The transformers class that builds and loads the family's model (`from_config`, `from_pretrained`)."""

    def __init__(self, model: PreTrainedModel):
        self.model = model

    @classmethod
    def check_config(cls, config: PreTrainedConfig, source: str = "the encoder") -> None:
        """Raise a ValueError naming `source` when `config` is of the family but describes a model SCOT cannot use."""

    @classmethod
    def check_model(cls, model: PreTrainedModel, source: str = "the encoder") -> None:
        """Raise a ValueError naming `source` when `model` is of the family but lacks what SCOT needs."""
        cls.check_config(model.config, source)

    @classmethod
    def build(cls, config: PreTrainedConfig) -> PreTrainedModel:
        """A randomly initialised model of `config` (weights are loaded over it)."""
        return cls.model_class.from_config(config)

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

    @property
    def vectors_per_image(self) -> int:
        """K, the number of vectors `image_vectors` gives per image."""
        return 1

    def probe_inputs(self) -> dict[str, torch.Tensor]:
        """Fixed model inputs of one image (smooth channel patterns at the tower's input size), the same on every
        machine and for every processor: what identifies the image tower by its embedding."""
        size = self.model.config.vision_config.image_size
        return {"pixel_values": probe_pattern(3, size, size)[None]}

    def image_embeds(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, D) L2-normalised pooled image embeddings, float32."""
        output = self.model.get_image_features(pixel_values=pixel_values.to(self.model.dtype), **image_kwargs)
        return F.normalize(pooled_embedding(output, "get_image_features").float(), dim=-1)

    def image_vectors(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, K, D) L2-normalised image vectors; K = 1 here (the pooled embedding)."""
        return self.image_embeds(pixel_values, **image_kwargs)[:, None]

    def pooled(self, image_vectors: torch.Tensor) -> torch.Tensor:
        """(..., D) the pooled image embeddings V of (..., K, D) `image_vectors`, as `image_embeds` pools them."""
        return image_vectors[..., 0, :]

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

    def probe_inputs(self) -> dict[str, torch.Tensor]:
        vision = self.model.config.vision_config
        side = math.isqrt(vision.num_patches)
        patches = probe_pattern(3 * vision.patch_size**2, side, side).flatten(1).T[None]
        return {
            "pixel_values": patches,
            "pixel_attention_mask": torch.ones(1, side * side, dtype=torch.long),
            "spatial_shapes": torch.tensor([[side, side]]),
        }


def probe_pattern(channels: int, height: int, width: int) -> torch.Tensor:
    """(channels, height, width) values in [-1, 1]: each channel a sine wave of its own frequency and direction."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    frequency = torch.arange(1, channels + 1, dtype=torch.float32)[:, None, None]
    return torch.sin(math.pi * frequency * (x + 0.5 * y) + frequency)


def mean_pooled(image_vectors: torch.Tensor) -> torch.Tensor:
    """(..., D) the L2-normalised mean of (..., K, D) L2-normalised image vectors: one vector per image that
    weighs every query token alike and does not depend on the text it will be composed with."""
    return F.normalize(image_vectors.float().mean(dim=-2), dim=-1)


def text_matched(image_vectors: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """(B, D): for each row, the one of its K L2-normalised image vectors (B, K, D) closest to its text embedding
    (B, D), the vector through which BLIP-2 would score that text against the image."""
    if image_vectors.ndim != 3 or text_embeds.shape != (image_vectors.shape[0], image_vectors.shape[-1]):
        raise ValueError(
            f"text_matched pools (B, K, D) image vectors with (B, D) texts, got {tuple(image_vectors.shape)} "
            f"and {tuple(text_embeds.shape)}"
        )
    best = torch.einsum("bkd,bd->bk", image_vectors.float(), text_embeds.float()).argmax(dim=-1)
    return image_vectors[torch.arange(len(best), device=best.device), best]


class Blip2Adapter(DualEncoderAdapter):
    """BLIP-2's retrieval model (`Blip2ForImageTextRetrieval`, the `blip2-itm-*` checkpoints), on its contrastive
    (ITC) path: the vision tower's patch features feed the Q-Former's learned query tokens, whose outputs, each
    projected by `vision_projection` and L2-normalised, are the image's K vectors (B, K, D); text runs through
    the Q-Former's own text path and `text_projection` of its first ([CLS]) token, (B, D). Text scores an image
    by its best query vector. Its pooled image embedding is `mean_pooled` over the K vectors; the V a SCOT model
    reads follows `ScotConfig.image_pooling` (by default `text_matched`, see `ScotModel.pool_image`)."""

    family = "blip-2"
    multi_vector = True
    model_class = Blip2ForImageTextRetrieval
    _NEEDED: ClassVar[str] = (
        "SCOT needs BLIP-2's retrieval model, Blip2ForImageTextRetrieval (checkpoints such as "
        "Salesforce/blip2-itm-vit-g), whose Q-Former embeds text as well as images"
    )

    @classmethod
    def check_config(cls, config: PreTrainedConfig, source: str = "the encoder") -> None:
        architectures = getattr(config, "architectures", None) or []
        if architectures and "Blip2ForImageTextRetrieval" not in architectures:
            raise ValueError(f"{source} is a BLIP-2 {architectures[0]}: {cls._NEEDED}")
        if not config.qformer_config.use_qformer_text_input:
            raise ValueError(
                f"{source}: its qformer_config has use_qformer_text_input=false, so its Q-Former has no text path; "
                "BLIP-2 retrieval checkpoints set it to true"
            )

    @classmethod
    def build(cls, config: PreTrainedConfig) -> PreTrainedModel:
        return Blip2ForImageTextRetrieval._from_config(config)

    @classmethod
    def check_model(cls, model: PreTrainedModel, source: str = "the encoder") -> None:
        if not isinstance(model, Blip2ForImageTextRetrieval):
            raise ValueError(f"{source} is a BLIP-2 {type(model).__name__}: {cls._NEEDED}")
        super().check_model(model, source)

    @property
    def text_tower(self) -> nn.Module:
        return self.model.qformer

    @property
    def vocab_size(self) -> int:
        return self.model.config.qformer_config.vocab_size

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    @property
    def vectors_per_image(self) -> int:
        return self.model.config.num_query_tokens

    def image_vectors(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, K, D) L2-normalised projections of the K query tokens' Q-Former outputs, float32."""
        model = self.model
        patches = model.vision_model(pixel_values=pixel_values.to(self.vision_tower.dtype), **image_kwargs)[0]
        patch_mask = torch.ones(patches.shape[:-1], dtype=torch.long, device=patches.device)
        queries = model.qformer(
            query_embeds=model.query_tokens.expand(patches.shape[0], -1, -1),
            encoder_hidden_states=patches,
            encoder_attention_mask=patch_mask,
        ).last_hidden_state
        vectors = model.vision_projection(queries.to(model.vision_projection.weight.dtype))
        return F.normalize(vectors.float(), dim=-1)

    def image_embeds(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, D) `mean_pooled` image vectors."""
        return self.pooled(self.image_vectors(pixel_values, **image_kwargs))

    def pooled(self, image_vectors: torch.Tensor) -> torch.Tensor:
        return mean_pooled(image_vectors)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) L2-normalised `text_projection` of the Q-Former text path's first token, float32."""
        model = self.model
        hidden = model.qformer(
            query_embeds=model.embeddings(input_ids=input_ids), query_length=0, attention_mask=attention_mask
        ).last_hidden_state
        return F.normalize(model.text_projection(hidden[:, 0].to(model.text_projection.weight.dtype)).float(), dim=-1)


ADAPTERS: dict[str, type[DualEncoderAdapter]] = {
    adapter.family: adapter for adapter in (ClipAdapter, SiglipAdapter, Siglip2Adapter, Blip2Adapter)
}


def adapter_class(model_type: str | None, source: str = "the encoder") -> type[DualEncoderAdapter]:
    """The adapter class of a `model_type`; a ValueError names it and the supported families."""
    check_encoder_family(model_type, source)
    return ADAPTERS[model_type]


def adapter_for(model: PreTrainedModel, source: str = "the encoder") -> DualEncoderAdapter:
    """The adapter of `model`'s family; a ValueError names the family and the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = adapter_class(model_type or type(model).__name__, source)
    adapter.check_model(model, source)
    return adapter(model)


__all__ = [
    "ADAPTERS",
    "Blip2Adapter",
    "ClipAdapter",
    "DualEncoderAdapter",
    "Siglip2Adapter",
    "SiglipAdapter",
    "adapter_class",
    "adapter_for",
    "mean_pooled",
    "text_matched",
    "pooled_embedding",
]
