"""LinCIR (Gu et al., CVPR 2024, "Language-only Training of Zero-shot Composed Image Retrieval"): a projection phi
maps an embedding of the frozen dual encoder to one token embedding of its text tower.

Trained on captions alone (see `lincir_training`), phi turns a caption's text embedding into the token that stands
for the caption's keywords. At query time it turns the reference image's embedding into the token of the prompt
"a photo of $ that {modification}", which the frozen text tower encodes into the composed query; the gallery is
image embeddings. A saved model holds phi only and names the encoder it was trained with.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import nn

from ..modeling_scot import ScotModel
from .frozen_encoder import (
    MODIFICATION,
    check_prompt_fields,
    encoder_signature,
    encoder_sizes,
    load_encoder,
    load_trained_part,
    save_trained_part,
)
from .keywords import PlaceholderTokenizer
from .saved_config import SavedConfig

COMPOSE_BATCH_SIZE = 256


@dataclass
class LincirConfig(SavedConfig):
    """phi's sizes, LinCIR's settings, and the encoder phi belongs to (`encoder_name_or_path`, `encoder_signature`)."""

    model_type: ClassVar[str] = "lincir"
    label: ClassVar[str] = "a LinCIR"
    encoder_towers: ClassVar[tuple[str, ...]] = ("text",)
    """The towers phi depends on: it trains on text embeddings alone, so a tuned image tower (TAT) may serve it."""

    embed_dim: int
    token_dim: int
    hidden_dim: int = 0
    """Width of phi's two hidden layers; 0: 4 * embed_dim (LinCIR's size: 768 -> 3072 -> 3072 -> 768 for ViT-L)."""
    dropout: float = 0.5
    noise_scale: float = 1.0
    """Training adds `noise_scale * u * n / sqrt(D)` to the L2-normalised caption embedding, u ~ U(0, 1) per caption,
    n ~ N(0, I_D): noise about `noise_scale * u` times as long as the embedding. (LinCIR's code adds `u * n` to the
    unnormalised CLIP embedding, whose norm r sets the ratio: its setting is noise_scale = sqrt(D) / r here.)"""
    placeholder: str = "$"
    prompt_template: str = "a photo of $ that {modification}"
    encoder_name_or_path: str | None = None
    encoder_signature: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("embed_dim", "token_dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (name != "hidden_dim"):
                raise ValueError(f"LincirConfig.{name} must be a positive integer, got {value!r}")
        self.hidden_dim = self.hidden_dim or 4 * self.embed_dim
        for name, low, high in (("dropout", 0.0, 1.0), ("noise_scale", 0.0, float("inf"))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ValueError(f"LincirConfig.{name} must be a number in [{low}, {high}), got {value!r}")
        check_prompt_fields(self)


class LincirPhi(nn.Module):
    """phi: Linear(D, H), GELU, Dropout, Linear(H, H), GELU, Dropout, Linear(H, token_dim)."""

    def __init__(self, config: LincirConfig):
        super().__init__()
        width = config.hidden_dim
        self.layers = nn.Sequential(
            nn.Linear(config.embed_dim, width), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(width, width), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(width, config.token_dim),
        )  # fmt: skip

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds)


class LincirModel:
    """phi around a frozen encoder (a [`ScotModel`], whose `encoder_adapter` encodes text with injected tokens)."""

    def __init__(self, config: LincirConfig, encoder: ScotModel, phi: LincirPhi | None = None):
        signature = encoder_sizes(encoder)
        for name in ("embed_dim", "token_dim"):
            if getattr(config, name) != signature[name]:
                raise ValueError(f"LincirConfig.{name} is {getattr(config, name)}, the encoder's is {signature[name]}")
        if encoder.processor is None:
            raise ValueError("the encoder has no processor: load it from a Hub id or folder with processor files")
        tokenizer = encoder.processor.tokenizer
        max_length = min(tokenizer.model_max_length, encoder.encoder.config.text_config.max_position_embeddings)
        self.config, self.encoder = config, encoder
        self.tokenizer = PlaceholderTokenizer(tokenizer, config.placeholder, max_length, encoder.processor.text_padding)
        self.phi = (phi if phi is not None else LincirPhi(config)).to(encoder.device)

    @classmethod
    def from_encoder(
        cls, encoder: ScotModel | str | os.PathLike, *, dtype: torch.dtype | None = None, **settings
    ) -> LincirModel:
        """A fresh (untrained) phi for `encoder`; `settings` are [`LincirConfig`] fields (dropout, noise_scale, ...)."""
        settable = {f.name for f in fields(LincirConfig)} - {"embed_dim", "token_dim", "encoder_signature"}
        unknown = sorted(set(settings) - settable)
        if unknown:
            raise ValueError(f"unknown LinCIR setting(s) {unknown}; choose from {sorted(settable)}")
        encoder = load_encoder(encoder, dtype)
        signature = encoder_signature(encoder)
        config = LincirConfig(
            embed_dim=signature["embed_dim"],
            token_dim=signature["token_dim"],
            encoder_name_or_path=encoder.config.encoder_name_or_path,
            encoder_signature=signature,
            **settings,
        )
        return cls(config, encoder)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def to(self, device: torch.device | str) -> LincirModel:
        self.encoder.to(device)
        self.phi.to(device)
        return self

    def prompt_pieces(self, modifications: list[str]) -> list[list[str]]:
        """The prompt around each modification, split at the placeholder."""
        before, after = self.config.prompt_template.split(self.config.placeholder)
        return [[before, after.replace(MODIFICATION, text)] for text in modifications]

    @torch.inference_mode()
    def compose(self, image_embeds: torch.Tensor, modifications: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised composed queries of (N, D) reference-image embeddings and N modification texts.

        phi (in eval mode, no noise) maps each image embedding to the placeholder's token; a modification too long
        for the text tower is cut (one warning per call), never the placeholder.
        """
        if image_embeds.ndim != 2 or image_embeds.shape[1] != self.config.embed_dim:
            expected = f"(N, {self.config.embed_dim})"
            raise ValueError(f"image_embeds must have shape {expected}, got {tuple(image_embeds.shape)}")
        if (
            isinstance(modifications, str)
            or len(modifications) != len(image_embeds)
            or not all(isinstance(text, str) for text in modifications)
        ):
            raise ValueError(f"modifications must be a list of {len(image_embeds)} strings, one per image embedding")
        batch = self.tokenizer(self.prompt_pieces(list(modifications)))
        if (batch.counts() != 1).any():
            raise ValueError(f"the prompt template {self.config.prompt_template!r} leaves no room for the placeholder")
        if batch.truncated:
            first = batch.truncated[0]
            warnings.warn(
                f"{len(batch.truncated)} of {len(modifications)} modifications were cut to fit the text tower's "
                f"{self.tokenizer.max_length} tokens (the first: {modifications[first][:60]!r})",
                stacklevel=2,
            )
        training = self.phi.training
        self.phi.eval()
        adapter, device = self.encoder.encoder_adapter, self.device
        dtype = adapter.token_embedding.weight.dtype
        parts = []
        try:
            for start in range(0, len(image_embeds), COMPOSE_BATCH_SIZE):
                rows = slice(start, start + COMPOSE_BATCH_SIZE)
                tokens = self.phi(image_embeds[rows].to(device, torch.float32)).to(dtype)
                mask = None if batch.attention_mask is None else batch.attention_mask[rows].to(device)
                queries = adapter.text_embeds_with_tokens(
                    batch.input_ids[rows].to(device), mask, batch.replace[rows].to(device), tokens
                )
                parts.append(queries.float().cpu())
        finally:
            self.phi.train(training)
        return torch.cat(parts) if parts else torch.empty(0, self.config.embed_dim)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write config.json and model.safetensors (phi only; the config names the encoder)."""
        save_trained_part(folder, self.config, self.phi)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        encoder: ScotModel | str | os.PathLike | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> LincirModel:
        """phi saved at `folder` around `encoder` (default: the encoder its config names); refuses an encoder other
        than the one phi was trained with."""
        config, encoder, phi = load_trained_part(folder, LincirConfig, LincirPhi, encoder, dtype, "phi")
        return cls(config, encoder, phi)


__all__ = ["LincirConfig", "LincirModel", "LincirPhi"]
