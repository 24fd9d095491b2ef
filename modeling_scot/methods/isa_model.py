"""ISA (Du et al., ICLR 2024, "Image2Sentence based Asymmetrical Zero-shot Composed Image Retrieval"): a light
query-side image encoder turns the reference image into K pseudo-word tokens of the frozen text tower.

The query side reads the reference image's pixels with a small randomly initialised ViT (a CLIP-style vision
transformer far smaller than the encoder's image tower); an adaptive token learner (K learned queries attending over
the small ViT's patch features) maps them to K token embeddings, which take the place of the K placeholders of the
prompt "a photo of $ $ $ $ that {modification}" encoded by the frozen text tower. The gallery is embedded by the
unchanged large image tower, so a query never runs it: [`query_cost`] measures the saving. Trained on unlabelled
images (see `isa_training`). A saved model holds the small ViT and the token learner only and names its encoder.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, CLIPVisionModel

from ..encoders import DualEncoderAdapter
from ..encoding import IMAGE_INPUT_NAMES
from ..modeling_scot import ScotModel
from .keywords import PlaceholderBatch, PlaceholderTokenizer
from .frozen_encoder import (
    MODIFICATION,
    check_prompt_fields,
    encoder_signature,
    encoder_sizes,
    load_encoder,
    load_trained_part,
    save_trained_part,
)
from .lincir_model import COMPOSE_BATCH_SIZE
from .saved_config import SavedConfig


@dataclass
class IsaConfig(SavedConfig):
    """The light encoder's and token learner's sizes, ISA's loss settings, and the encoder they belong to."""

    model_type: ClassVar[str] = "isa"
    label: ClassVar[str] = "an ISA"
    encoder_towers: ClassVar[tuple[str, ...]] = ("image", "text")
    """The towers the query encoder depends on: distilled towards the image tower, composing through the text one."""

    embed_dim: int = field(metadata={"help": "Width of the encoder's joint embedding space."})
    token_dim: int = field(metadata={"help": "Width of the text tower's token embeddings."})
    image_size: int = field(metadata={"help": "Side of the square images the encoder's processor makes."})
    num_tokens: int = field(default=4, metadata={"help": "K: pseudo-word tokens per reference image."})
    patch_size: int = field(default=16, metadata={"help": "Patch side of the light ViT."})
    width: int = field(default=128, metadata={"help": "Hidden width of the light ViT and the token learner."})
    depth: int = field(default=4, metadata={"help": "Transformer layers of the light ViT."})
    heads: int = field(default=4, metadata={"help": "Attention heads of the light ViT and the token learner."})
    temperature: float = field(default=0.07, metadata={"help": "Softmax temperature of the distillation loss."})
    local_weight: float = field(default=0.1, metadata={"help": "Weight of the local alignment loss (0 drops it)."})
    placeholder: str = field(default="$", metadata={"help": "The prompt's placeholder (one token)."})
    prompt_template: str = field(
        default="a photo of $ that {modification}",
        metadata={"help": "Query prompt; its placeholder expands to the K pseudo-word tokens."},
    )
    encoder_name_or_path: str | None = field(default=None, metadata={"help": "Hub id or folder of the encoder."})
    encoder_signature: dict = field(default_factory=dict, metadata={"help": "What identifies the encoder."})

    def __post_init__(self) -> None:
        for name in ("embed_dim", "token_dim", "image_size", "num_tokens", "patch_size", "width", "depth", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IsaConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"IsaConfig.width ({self.width}) must be a multiple of IsaConfig.heads ({self.heads})")
        if self.patch_size > self.image_size:
            raise ValueError(f"IsaConfig.patch_size ({self.patch_size}) exceeds the image_size ({self.image_size})")
        for name, low in (("temperature", 1e-6), ("local_weight", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < math.inf:
                raise ValueError(f"IsaConfig.{name} must be a number in [{low}, inf), got {value!r}")
        check_prompt_fields(self)


class AdaptiveTokenLearner(nn.Module):
    """K learned queries attend over the light encoder's (layer-normalised) features (pre-norm cross-attention,
    then an MLP, both residual); a LayerNorm and a linear map take the K results to the token-embedding width."""

    def __init__(self, config: IsaConfig):
        super().__init__()
        width = config.width
        self.queries = nn.Parameter(torch.randn(config.num_tokens, width) * width**-0.5)
        self.query_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, config.heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.output_norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, config.token_dim)

    @torch.no_grad()
    def match_table(self, table: torch.Tensor) -> None:
        """Start the tokens among the (V, token_dim) token-embedding `table`'s rows: the output projection's bias
        becomes the table's mean row and its weights are scaled to the rows' mean squared distance from it."""
        table = table.float()
        mean = table.mean(dim=0)
        spread = (table - mean).pow(2).sum(dim=1).mean()
        weight = self.projection.weight
        weight.mul_((spread / weight.pow(2).sum()).sqrt().to(weight.dtype))  # E|Wx|^2 = |W|_F^2 for x ~ N(0, I)
        self.projection.bias.copy_(mean)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, width) features -> (B, K, token_dim) pseudo-word token embeddings."""
        queries = self.queries.repeat(features.shape[0], 1, 1)  # a copy, not a view: FlopCounterMode tracks it
        tokens = queries + self.attention(self.query_norm(queries), features, features, need_weights=False)[0]
        tokens = tokens + self.mlp(self.mlp_norm(tokens))
        return self.projection(self.output_norm(tokens))


class IsaQueryEncoder(nn.Module):
    """The query side: a small CLIP-style ViT on the reference pixels (its final LayerNorm on every position, where
    CLIP applies it to the class token only), then the [`AdaptiveTokenLearner`]."""

    def __init__(self, config: IsaConfig):
        super().__init__()
        vision = CLIPVisionConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.width,
            intermediate_size=4 * config.width,
            num_hidden_layers=config.depth,
            num_attention_heads=config.heads,
            hidden_act="gelu",
        )
        self.light_encoder = CLIPVisionModel(vision)
        self.token_learner = AdaptiveTokenLearner(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) processed pixels -> (B, K, token_dim) pseudo-word token embeddings."""
        features = self.light_encoder(pixel_values=pixel_values).last_hidden_state
        return self.token_learner(self.light_encoder.post_layernorm(features))


def pseudo_sentence_embeds(
    query_encoder: nn.Module, adapter: DualEncoderAdapter, prompts: PlaceholderBatch, pixel_values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) text embeddings of `prompts` (K placeholders a row) with the placeholders carrying the pseudo-word
    tokens of `pixel_values`, and those (B, K, token_dim) tokens. Gradients reach `query_encoder` only."""
    device = pixel_values.device
    tokens = query_encoder(pixel_values)
    table_dtype = adapter.token_embedding.weight.dtype
    mask = None if prompts.attention_mask is None else prompts.attention_mask.to(device)
    embeds = adapter.text_embeds_with_tokens(
        prompts.input_ids.to(device), mask, prompts.replace.to(device), tokens.flatten(0, 1).to(table_dtype)
    )
    return embeds, tokens


def processor_image_size(processor) -> int:
    """The side of the square (3, S, S) images `processor` makes; a ValueError for processors that make none."""
    pixels = processor(images=torch.zeros(3, 8, 8, dtype=torch.uint8), return_tensors="pt")["pixel_values"]
    if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2] != pixels.shape[3]:
        raise ValueError(
            f"ISA's light encoder reads square (3, S, S) images, but the encoder's processor makes pixel_values of "
            f"shape {tuple(pixels.shape[1:])} per image (native-resolution patches?)"
        )
    return int(pixels.shape[-1])


class IsaModel:
    """The query encoder around a frozen dual encoder (a [`ScotModel`]): queries from reference pixels and texts
    through the text tower, the gallery through the unchanged image tower."""

    def __init__(self, config: IsaConfig, encoder: ScotModel, query_encoder: IsaQueryEncoder | None = None):
        signature = encoder_sizes(encoder)
        for name in ("embed_dim", "token_dim"):
            if getattr(config, name) != signature[name]:
                raise ValueError(f"IsaConfig.{name} is {getattr(config, name)}, the encoder's is {signature[name]}")
        if encoder.processor is None:
            raise ValueError("the encoder has no processor: load it from a Hub id or folder with processor files")
        size = processor_image_size(encoder.processor)
        if config.image_size != size:
            raise ValueError(f"IsaConfig.image_size is {config.image_size}, the encoder's processor makes {size} px")
        tokenizer = encoder.processor.tokenizer
        max_length = min(tokenizer.model_max_length, encoder.encoder.config.text_config.max_position_embeddings)
        self.config, self.encoder = config, encoder
        self.tokenizer = PlaceholderTokenizer(tokenizer, config.placeholder, max_length, encoder.processor.text_padding)
        if (self.tokenizer([self.training_pieces()]).counts() != config.num_tokens).any():
            raise ValueError(
                f"IsaConfig.num_tokens ({config.num_tokens}) placeholders do not fit in the text tower's "
                f"{max_length} tokens after {config.prompt_template!r}"
            )
        if query_encoder is None:
            query_encoder = IsaQueryEncoder(config)
            query_encoder.token_learner.match_table(encoder.encoder_adapter.token_embedding.weight.detach())
        self.query_encoder = query_encoder.to(encoder.device)

    @classmethod
    def from_encoder(
        cls, encoder: ScotModel | str | os.PathLike, *, dtype: torch.dtype | None = None, **settings
    ) -> IsaModel:
        """A fresh (untrained) query encoder for `encoder`; `settings` are [`IsaConfig`] fields (num_tokens,
        patch_size, width, depth, heads, temperature, local_weight, ...). The image size is the processor's."""
        settable = {f.name for f in fields(IsaConfig)} - {"embed_dim", "token_dim", "image_size", "encoder_signature"}
        unknown = sorted(set(settings) - settable)
        if unknown:
            raise ValueError(f"unknown ISA setting(s) {unknown}; choose from {sorted(settable)}")
        encoder = load_encoder(encoder, dtype)
        if encoder.processor is None:
            raise ValueError("the encoder has no processor: load it from a Hub id or folder with processor files")
        signature = encoder_signature(encoder)
        settings.setdefault("encoder_name_or_path", encoder.config.encoder_name_or_path)
        config = IsaConfig(
            embed_dim=signature["embed_dim"],
            token_dim=signature["token_dim"],
            image_size=processor_image_size(encoder.processor),
            encoder_signature=signature,
            **settings,
        )
        return cls(config, encoder)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def to(self, device: torch.device | str) -> IsaModel:
        self.encoder.to(device)
        self.query_encoder.to(device)
        return self

    def _pieces(self, after: str) -> list[str]:
        before, _ = self.config.prompt_template.split(self.config.placeholder)
        return [before] + [""] * (self.config.num_tokens - 1) + [after]

    def prompt_pieces(self, modifications: list[str]) -> list[list[str]]:
        """The query prompt around each modification, split at its K placeholders."""
        _, after = self.config.prompt_template.split(self.config.placeholder)
        return [self._pieces(after.replace(MODIFICATION, text)) for text in modifications]

    def training_pieces(self) -> list[str]:
        """The training prompt (the template up to its placeholder, "a photo of $ $ $ $"), split at its placeholders."""
        return self._pieces("")

    def pixel_values(self, images: torch.Tensor | Sequence) -> torch.Tensor:
        """(N, 3, S, S) float32 pixels on the model's device: processed pixels as given, or images (PIL, arrays,
        paths) through the encoder's processor."""
        if isinstance(images, torch.Tensor):
            size = self.config.image_size
            if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size) or not images.is_floating_point():
                raise ValueError(f"pixel values must be a float (N, 3, {size}, {size}) tensor, got "
                                 f"{images.dtype} {tuple(images.shape)}")  # fmt: skip
            pixels = images
        else:
            pixels = self.encoder.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, torch.float32)

    @torch.inference_mode()
    def compose(self, images: torch.Tensor | Sequence, modifications: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised composed queries of N reference images (processed (N, 3, S, S) pixels, or images
        for the encoder's processor) and N modification texts. The large image tower does not run; a modification
        too long for the text tower is cut (one warning per call), never the placeholders."""
        count = len(images)
        if (
            isinstance(modifications, str)
            or len(modifications) != count
            or not all(isinstance(text, str) for text in modifications)
        ):
            raise ValueError(f"modifications must be a list of {count} strings, one per reference image")
        batch = self.tokenizer(self.prompt_pieces(list(modifications)))
        if batch.truncated:
            first = batch.truncated[0]
            warnings.warn(
                f"{len(batch.truncated)} of {count} modifications were cut to fit the text tower's "
                f"{self.tokenizer.max_length} tokens (the first: {modifications[first][:60]!r})",
                stacklevel=2,
            )
        training = self.query_encoder.training
        self.query_encoder.eval()
        parts = []
        try:
            for start in range(0, count, COMPOSE_BATCH_SIZE):
                rows = slice(start, start + COMPOSE_BATCH_SIZE)
                mask = None if batch.attention_mask is None else batch.attention_mask[rows]
                prompts = PlaceholderBatch(batch.input_ids[rows], mask, batch.replace[rows], [])
                queries, _ = pseudo_sentence_embeds(
                    self.query_encoder, self.encoder.encoder_adapter, prompts, self.pixel_values(images[rows])
                )
                parts.append(queries.float().cpu())
        finally:
            self.query_encoder.train(training)
        return torch.cat(parts) if parts else torch.empty(0, self.config.embed_dim)

    def gallery_embeds(self, images: torch.Tensor | Sequence) -> torch.Tensor:
        """(N, D) L2-normalised gallery embeddings from the unchanged large image tower (processed pixels, or
        images for the encoder's processor; SigLIP 2's extra image inputs pass through the processor)."""
        if isinstance(images, torch.Tensor):
            return self.encoder.get_image_features(images.to(self.device)).cpu()
        inputs = self.encoder.processor(images=list(images), return_tensors="pt")
        image_inputs = {name: value.to(self.device) for name, value in inputs.items() if name in IMAGE_INPUT_NAMES}
        return self.encoder.get_image_features(**image_inputs).cpu()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write config.json and model.safetensors (the query encoder only; the config names the encoder)."""
        save_trained_part(folder, self.config, self.query_encoder)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        encoder: ScotModel | str | os.PathLike | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> IsaModel:
        """The query encoder saved at `folder` around `encoder` (default: the encoder its config names); refuses an
        encoder other than the one it was trained with."""
        config, encoder, query_encoder = load_trained_part(
            folder, IsaConfig, IsaQueryEncoder, encoder, dtype, "the ISA query encoder"
        )
        return cls(config, encoder, query_encoder)


def _flops_and_seconds(forward: Callable[[], object], repeats: int, device: torch.device) -> tuple[int, float]:
    """FLOPs of one call of `forward` (attention through the math kernel, whose matrix products are counted) and
    the best wall time of `repeats` calls after a warm-up call."""
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        forward()
    forward()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return counter.get_total_flops(), min(seconds)


@torch.no_grad()
def query_cost(model: IsaModel, repeats: int = 5) -> dict[str, float]:
    """What the query side saves on one reference image: parameters, forward FLOPs (`FlopCounterMode`) and best
    latency of `repeats` runs of the light encoder with its token learner, against the large image tower (with its
    projection) that the gallery uses. Both sides share the text tower, which is not counted."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    inputs = model.encoder.processor(images=torch.zeros(3, 8, 8, dtype=torch.uint8), return_tensors="pt")
    image_inputs = {name: value.to(model.device) for name, value in inputs.items() if name in IMAGE_INPUT_NAMES}
    training = model.query_encoder.training
    model.query_encoder.eval()
    try:
        light_flops, light_seconds = _flops_and_seconds(
            lambda: model.query_encoder(image_inputs["pixel_values"].float()), repeats, model.device
        )
    finally:
        model.query_encoder.train(training)
    tower_flops, tower_seconds = _flops_and_seconds(
        lambda: model.encoder.get_image_features(**image_inputs), repeats, model.device
    )
    encoder = model.encoder.encoder
    tower_modules = [model.encoder.encoder_adapter.vision_tower, getattr(encoder, "visual_projection", None)]
    tower_parameters = sum(p.numel() for module in tower_modules if module is not None for p in module.parameters())
    return {
        "light_parameters": sum(p.numel() for p in model.query_encoder.parameters()),
        "tower_parameters": tower_parameters,
        "light_flops": light_flops,
        "tower_flops": tower_flops,
        "flops_ratio": light_flops / tower_flops,
        "light_seconds": light_seconds,
        "tower_seconds": tower_seconds,
        "latency_ratio": light_seconds / tower_seconds,
    }


__all__ = [
    "AdaptiveTokenLearner",
    "IsaConfig",
    "IsaModel",
    "IsaQueryEncoder",
    "processor_image_size",
    "pseudo_sentence_embeds",
    "query_cost",
]
