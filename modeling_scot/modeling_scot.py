"""SCOT: a frozen dual encoder (CLIP, SigLIP, ...) and a trainable Combiner for composed image retrieval."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file, logging

from .activations import use_inference_activations
from .configuration_scot import ScotConfig
from .losses import scot_contrastive_loss
from .model_card import write_model_card
from .processing_scot import ScotProcessor
from .regions import closest_region, grid_region_pixels, pool_hypothesis_scores, region_mask

logger = logging.get_logger(__name__)

ENCODER_PREFIX = "clip."
WEIGHTS_NAME = "model.safetensors"
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


@dataclass
class ScotOutput(ModelOutput):
    r"""Output of [`ScotModel.forward`] and [`ScotModel.compose`].

    Args:
        loss: SCOT contrastive loss, when target texts were given.
        query_embeds: (B, D) L2-normalised composed queries f(V, T_m), to match against gallery image embeddings.
        modality_weight: (B,) the learned weight w of the text part (the image part gets 1 - w).
        image_embeds: (B, D) L2-normalised reference image embeddings V.
        text_embeds: (B, D) L2-normalised modification text embeddings T_m.
        target_embeds: (B, D) L2-normalised modified-caption embeddings T_u.
        negative_embeds: (B, K, D) L2-normalised hard-negative caption embeddings.
        caption_embeds: (B, D) L2-normalised original caption embeddings T_c.
        region_embeds: (B, K, D) grid-region embeddings of the references (zero rows: empty cells), for a
            model with `config.region_grid`.
        hypothesis_embeds: (B, K, D) composed queries, one per region taken as the referent (at retrieval);
            `query_embeds` is then the one of the occupied region closest to T_m.
    """

    loss: torch.Tensor | None = None
    query_embeds: torch.Tensor | None = None
    modality_weight: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    target_embeds: torch.Tensor | None = None
    negative_embeds: torch.Tensor | None = None
    caption_embeds: torch.Tensor | None = None
    region_embeds: torch.Tensor | None = None
    hypothesis_embeds: torch.Tensor | None = None


class Combiner(nn.Module):
    """Fuses an image and a text embedding: `w * text + (1 - w) * image + fused`, L2-normalised.

    Both inputs are projected and concatenated; one MLP predicts the residual `fused`, another the
    input-dependent modality weight `w` in (0, 1). `with_region` adds a referent input: a linear map of a
    region embedding, scaled by a gate in (0, 1) computed from (text, region), joins the text embedding
    first (an edit that adds an object can shut the gate).
    """

    def __init__(
        self, embed_dim: int, projection_dim: int, hidden_dim: int, dropout: float = 0.1, with_region: bool = False
    ):
        super().__init__()
        self.region_projection = nn.Linear(embed_dim, embed_dim) if with_region else None
        self.region_gate = (
            nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1)) if with_region else None
        )
        self.image_projection = nn.Sequential(nn.Linear(embed_dim, projection_dim), nn.ReLU(), nn.Dropout(dropout))
        self.text_projection = nn.Sequential(nn.Linear(embed_dim, projection_dim), nn.ReLU(), nn.Dropout(dropout))
        self.fusion = nn.Sequential(
            nn.Linear(2 * projection_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, embed_dim)
        )
        self.modality_gate = nn.Sequential(
            nn.Linear(2 * projection_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )

    def forward(
        self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, referent_embeds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the normalised composed embedding (B, D) and the text weight w (B,)."""
        if self.region_projection is not None:
            gate = torch.sigmoid(self.region_gate(torch.cat([text_embeds, referent_embeds], dim=-1)))
            text_embeds = text_embeds + gate * self.region_projection(referent_embeds)
        joint = torch.cat([self.image_projection(image_embeds), self.text_projection(text_embeds)], dim=-1)
        weight = torch.sigmoid(self.modality_gate(joint))
        composed = weight * text_embeds + (1 - weight) * image_embeds + self.fusion(joint)
        return F.normalize(composed, dim=-1), weight.squeeze(-1)


def _pooled_embedding(output, what: str) -> torch.Tensor:
    """The projected embedding of a `get_*_features` call, whatever its return type."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise TypeError(f"{what} returned {type(output).__name__} without a pooled embedding (pooler_output)")


def _check_tensor(value, name: str, ndims: tuple[int, ...], floating: bool) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {tuple(value.shape)}")
    if value.is_floating_point() != floating:
        kind = "a floating-point" if floating else "an integer"
        raise ValueError(f"{name} must be {kind} tensor, got dtype {value.dtype}")


def _check_dual_encoder(model: nn.Module, source: str) -> None:
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(
            f"{source} holds a {type(model).__name__}, which has no get_image_features/get_text_features; "
            "a SCOT model needs a dual encoder such as CLIP, SigLIP or SigLIP 2"
        )


def load_dual_encoder(source: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """Load a transformers dual encoder (CLIP, SigLIP, ...) from a Hub id or a local folder.

    `kwargs` go to `AutoModel.from_pretrained` (`dtype`, `attn_implementation`, hub options).
    """
    source = os.fspath(source)
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"dual encoder folder {source!r} does not exist")
        if not (path / "config.json").is_file():
            raise ValueError(f"{source!r} is not a CLIP-style checkpoint: it has no config.json")
    try:
        config = AutoConfig.from_pretrained(source, **{k: v for k, v in kwargs.items() if k in HUB_KWARGS})
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cannot read a model config from {source!r}: {err}") from err
    if not hasattr(config, "vision_config") or not hasattr(config, "text_config"):
        raise ValueError(
            f"{source!r} holds a {config.model_type!r} config without vision_config/text_config; "
            "a SCOT model needs a dual encoder such as CLIP, SigLIP or SigLIP 2"
        )
    try:
        model = AutoModel.from_pretrained(source, config=config, **kwargs)
    except OSError as err:
        raise ValueError(f"cannot load the weights of {source!r}: {err}") from err
    _check_dual_encoder(model, repr(source))
    return model


def _load_processor(source: str, hub_kwargs: dict) -> ScotProcessor | None:
    """The processor saved with `source`, or None where it has none."""
    try:
        return ScotProcessor.from_pretrained(source, trust_remote_code=False, **hub_kwargs)
    except (OSError, ValueError, TypeError) as err:
        logger.info(f"no processor loaded from {source}: {err}")
        return None


class ScotModel(PreTrainedModel):
    r"""A frozen dual encoder and a trainable [`Combiner`] producing composed queries f(V, T_m).

    The encoder (attribute `clip`) never trains: its parameters have `requires_grad=False` and it
    stays in eval mode under `model.train()`. Trainable parameters are the Combiner's and, with
    `learnable_temperature`, the `logit_scale`.
    """

    config: ScotConfig
    config_class = ScotConfig
    base_model_prefix = "scot"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    accepts_loss_kwargs = False
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: ScotConfig, clip_model: PreTrainedModel | None = None):
        super().__init__(config)
        self.clip = clip_model if clip_model is not None else AutoModel.from_config(config.clip_config)
        _check_dual_encoder(self.clip, "ScotConfig.clip_config")
        self.clip.requires_grad_(False)
        use_inference_activations(self.clip)
        self.combiner = Combiner(
            config.embed_dim,
            config.projection_dim,
            config.hidden_dim,
            config.combiner_dropout,
            with_region=config.region_grid > 0,
        )
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1 / config.temperature)), requires_grad=config.learnable_temperature
        )
        self.processor: ScotProcessor | None = None
        self.post_init()
        self.clip.eval()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            init.constant_(self.logit_scale, math.log(1 / self.config.temperature))

    def train(self, mode: bool = True) -> ScotModel:
        """Set train mode on the Combiner only; the frozen encoder stays in eval mode. The Trainer calls this
        every step, so the encoder's modules are only walked when its own flag says it left eval mode."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode) takes a bool, got {mode!r}")
        self.training = mode
        for child in self.children():
            if child is not self.clip:
                child.train(mode)
        if self.clip.training:
            self.clip.eval()
        return self

    @classmethod
    def from_clip(
        cls,
        clip: str | os.PathLike | PreTrainedModel,
        *,
        processor: ScotProcessor | None = None,
        dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        **config_overrides,
    ) -> ScotModel:
        """Build a SCOT model with a fresh Combiner around a pretrained dual encoder.

        Args:
            clip: a Hub id or local folder of a CLIP/SigLIP/SigLIP 2 checkpoint, or a loaded model.
            processor: the matching processor (default: loaded from `clip` when it is an id or folder).
            dtype: dtype of the encoder weights (e.g. `torch.bfloat16` on GPU).
            attn_implementation: "sdpa", "eager", ... passed to the encoder.
            config_overrides: [`ScotConfig`] fields (Combiner sizes, temperature, loss weights).
        """
        unknown = set(config_overrides) - {f.name for f in fields(ScotConfig)}
        if unknown:
            raise ValueError(f"unknown ScotConfig fields: {sorted(unknown)}")
        if isinstance(clip, PreTrainedModel):
            _check_dual_encoder(clip, f"the given {type(clip).__name__}")
            clip_model, name = clip, (clip.config.name_or_path or None)
        elif isinstance(clip, (str, os.PathLike)):
            load_kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
            clip_model = load_dual_encoder(clip, **{k: v for k, v in load_kwargs.items() if v is not None})
            name = os.fspath(clip)
        else:
            raise ValueError(f"clip must be a Hub id, a folder or a PreTrainedModel, got {type(clip).__name__}")
        model = cls._around(ScotConfig(clip_name_or_path=name, **config_overrides), clip_model)
        model.processor = processor if processor is not None or name is None else _load_processor(name, {})
        return model

    @classmethod
    def _around(cls, config: ScotConfig, clip_model: PreTrainedModel) -> ScotModel:
        """A model whose config shares the loaded encoder's config (and its attention implementation)."""
        attn_implementation = clip_model.config._attn_implementation
        config.clip_config = clip_model.config
        config._attn_implementation = attn_implementation
        return cls(config, clip_model=clip_model)

    def compile_encoders(self, **compile_kwargs) -> ScotModel:
        """`torch.compile` the encoder's vision and text towers in place (for large GPU jobs)."""
        for name in ("vision_model", "text_model"):
            tower = getattr(self.clip, name, None)
            if isinstance(tower, nn.Module):
                tower.compile(**compile_kwargs)
        return self

    # ----- encoders -------------------------------------------------------------------------------

    @torch.no_grad()
    def get_image_features(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """L2-normalised image embeddings (B, D) from the frozen encoder (float32)."""
        _check_tensor(pixel_values, "pixel_values", (3, 4), floating=True)
        output = self.clip.get_image_features(pixel_values=pixel_values.to(self.clip.dtype), **image_kwargs)
        return F.normalize(_pooled_embedding(output, "get_image_features").float(), dim=-1)

    @torch.no_grad()
    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text embeddings from the frozen encoder (float32).

        `input_ids` may be (B, L) or (B, K, L); the result is (B, D) or (B, K, D).
        """
        _check_tensor(input_ids, "input_ids", (2, 3), floating=False)
        vocab_size = getattr(getattr(self.clip.config, "text_config", None), "vocab_size", None)
        if input_ids.numel() and vocab_size:
            lowest, highest = (int(value) for value in torch.aminmax(input_ids))
            if lowest < 0 or highest >= vocab_size:
                raise ValueError(
                    f"input_ids hold token ids from {lowest} to {highest}, outside the text encoder's vocabulary "
                    f"of {vocab_size}: were they made by another model's tokenizer?"
                )
        leading = input_ids.shape[:-1]
        flat_ids = input_ids.reshape(-1, input_ids.shape[-1])
        flat_mask = None if attention_mask is None else attention_mask.reshape(flat_ids.shape)
        output = self.clip.get_text_features(input_ids=flat_ids, attention_mask=flat_mask)
        embeds = F.normalize(_pooled_embedding(output, "get_text_features").float(), dim=-1)
        return embeds.reshape(*leading, embeds.shape[-1])

    @torch.no_grad()
    def get_region_features(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """(B, G*G, D) L2-normalised embeddings of the `config.region_grid` regions of each image; cells that
        hold only the border colour are not encoded and get zero rows."""
        grid = self.config.region_grid
        if grid < 1:
            raise ValueError("this model has no region input (config.region_grid is 0)")
        _check_tensor(pixel_values, "pixel_values", (4,), floating=True)
        pixels, occupied = grid_region_pixels(pixel_values.float(), grid)
        embeds = torch.zeros(*occupied.shape, self.config.embed_dim, device=pixel_values.device)
        if occupied.any():
            embeds[occupied] = self.get_image_features(pixels[occupied], **image_kwargs)
        return embeds

    # ----- composition and loss -------------------------------------------------------------------

    def compose(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        region_embeds: torch.Tensor | None = None,
        referent_direction: torch.Tensor | None = None,
    ) -> ScotOutput:
        """Run the Combiner on (cached) image and text embeddings of shape (B, D).

        A model with `config.region_grid` also needs `region_embeds` (B, K, D) from [`get_region_features`].
        The referent is the occupied region closest to `referent_direction` (B, D) when given (training
        passes T_c - T_u), else closest to T_m; without `referent_direction` the output also holds one query
        per region (`hypothesis_embeds`), which [`score_gallery`] pools.
        """
        _check_tensor(image_embeds, "image_embeds", (2,), floating=True)
        _check_tensor(text_embeds, "text_embeds", (2,), floating=True)
        dim = self.config.embed_dim
        if image_embeds.shape[-1] != dim or text_embeds.shape[-1] != dim:
            raise ValueError(
                f"image_embeds {tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)} "
                f"must have {dim} features (the encoder's embedding size)"
            )
        if image_embeds.shape[0] != text_embeds.shape[0]:
            raise ValueError(f"image_embeds has {image_embeds.shape[0]} rows but text_embeds has {text_embeds.shape[0]}")
        dtype = self.logit_scale.dtype
        image_embeds, text_embeds = image_embeds.to(dtype), text_embeds.to(dtype)
        if self.config.region_grid == 0:
            if region_embeds is not None:
                raise ValueError("region_embeds given, but this model has no region input (config.region_grid is 0)")
            query_embeds, weight = self.combiner(image_embeds, text_embeds)
            return ScotOutput(
                query_embeds=query_embeds, modality_weight=weight, image_embeds=image_embeds, text_embeds=text_embeds
            )
        region_embeds = self._check_regions(region_embeds, image_embeds.shape[0]).to(dtype)
        rows = torch.arange(len(region_embeds), device=region_embeds.device)
        direction = text_embeds if referent_direction is None else referent_direction.to(dtype)
        referent = region_embeds[rows, closest_region(direction, region_embeds)]
        query_embeds, weight = self.combiner(image_embeds, text_embeds, referent)
        output = ScotOutput(
            query_embeds=query_embeds,
            modality_weight=weight,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            region_embeds=region_embeds,
        )
        if referent_direction is None:
            batch, regions, _ = region_embeds.shape
            repeat = lambda embeds: embeds[:, None].expand(batch, regions, dim).reshape(-1, dim)
            hypotheses, _ = self.combiner(repeat(image_embeds), repeat(text_embeds), region_embeds.reshape(-1, dim))
            output.hypothesis_embeds = hypotheses.view(batch, regions, dim)
        return output

    def _check_regions(self, region_embeds: torch.Tensor | None, batch: int) -> torch.Tensor:
        grid = self.config.region_grid
        if region_embeds is None:
            raise ValueError(
                f"this model composes with the {grid} x {grid} grid regions of the reference: pass region_embeds "
                "(model.get_region_features(pixel_values)) or pixel_values"
            )
        _check_tensor(region_embeds, "region_embeds", (3,), floating=True)
        expected = (batch, grid * grid, self.config.embed_dim)
        if tuple(region_embeds.shape) != expected:
            raise ValueError(f"region_embeds must have shape {expected}, got {tuple(region_embeds.shape)}")
        return region_embeds

    def score_gallery(self, output: ScotOutput, gallery_embeds: torch.Tensor) -> torch.Tensor:
        """(B, N) scores of the composed queries in `output` against gallery embeddings (N, D): cosine, or,
        with referent hypotheses, their soft maximum over the occupied regions."""
        gallery_embeds = gallery_embeds.to(output.query_embeds.device, output.query_embeds.dtype)
        if output.hypothesis_embeds is None:
            return output.query_embeds @ gallery_embeds.T
        scores = output.hypothesis_embeds @ gallery_embeds.T
        mask = region_mask(output.region_embeds)
        mask = mask | ~mask.any(dim=1, keepdim=True)
        return pool_hypothesis_scores(scores, mask, self.config.region_temperature)

    def contrastive_loss(
        self,
        query_embeds: torch.Tensor,
        target_embeds: torch.Tensor,
        negative_embeds: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
        caption_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[`scot_contrastive_loss`] with this model's logit scale and loss weights."""
        dtype = query_embeds.dtype
        return scot_contrastive_loss(
            query_embeds,
            target_embeds.to(dtype),
            self.logit_scale.exp().clamp(max=self.config.max_logit_scale),
            negative_embeds=None if negative_embeds is None else negative_embeds.to(dtype),
            negative_mask=negative_mask,
            caption_embeds=None if caption_embeds is None else caption_embeds.to(dtype),
            hard_negative_weight=self.config.hard_negative_weight,
            caption_negative_weight=self.config.caption_negative_weight,
            labels=labels,
        )

    def _embed_or_take(self, embeds, input_ids, attention_mask, name: str) -> torch.Tensor | None:
        if embeds is not None and input_ids is not None:
            raise ValueError(f"give either {name}_embeds or {name}_input_ids, not both")
        if input_ids is not None:
            return self.get_text_features(input_ids, attention_mask)
        return embeds

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        target_input_ids: torch.Tensor | None = None,
        target_attention_mask: torch.Tensor | None = None,
        target_embeds: torch.Tensor | None = None,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        negative_embeds: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
        caption_input_ids: torch.Tensor | None = None,
        caption_attention_mask: torch.Tensor | None = None,
        caption_embeds: torch.Tensor | None = None,
        region_embeds: torch.Tensor | None = None,
        return_loss: bool = True,
        **image_kwargs,
    ) -> ScotOutput:
        r"""Compose reference images with modification texts; add the SCOT loss when targets are given.

        Args:
            pixel_values: (B, C, H, W) reference images, or give `image_embeds` (B, D) instead.
            input_ids, attention_mask: (B, L) modification texts T_m, or give `text_embeds` (B, D).
            target_input_ids, target_attention_mask: (B, L) modified captions u (the positives),
                or `target_embeds` (B, D).
            negative_input_ids, negative_attention_mask: (B, K, L) hard-negative captions, or
                `negative_embeds` (B, K, D); `negative_mask` (B, K) is False on padding slots.
            caption_input_ids, caption_attention_mask: (B, L) original captions c, or `caption_embeds`.
            region_embeds: (B, K, D) grid-region embeddings of the references, for a model with
                `config.region_grid` given `image_embeds` (computed from `pixel_values` otherwise). With
                both T_c and T_u, the referent is the region closest to T_c - T_u.
            return_loss: compute the loss whenever targets are given (set False to skip it).
            image_kwargs: extra encoder image inputs (SigLIP 2's `pixel_attention_mask`, `spatial_shapes`).
        """
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError("give pixel_values or image_embeds for the reference images")
            image_embeds = self.get_image_features(pixel_values, **image_kwargs)
            if self.config.region_grid and region_embeds is None:
                region_embeds = self.get_region_features(pixel_values, **image_kwargs)
        elif pixel_values is not None:
            raise ValueError("give either pixel_values or image_embeds, not both")
        text_embeds = self._embed_or_take(text_embeds, input_ids, attention_mask, "text")
        if text_embeds is None:
            raise ValueError("give input_ids or text_embeds for the modification texts")
        target_embeds = self._embed_or_take(target_embeds, target_input_ids, target_attention_mask, "target")
        caption_embeds = self._embed_or_take(caption_embeds, caption_input_ids, caption_attention_mask, "caption")
        direction = None
        if self.config.region_grid and target_embeds is not None and caption_embeds is not None:
            direction = caption_embeds - target_embeds
        output = self.compose(image_embeds, text_embeds, region_embeds, referent_direction=direction)
        output.target_embeds, output.caption_embeds = target_embeds, caption_embeds
        output.negative_embeds = self._embed_or_take(
            negative_embeds, negative_input_ids, negative_attention_mask, "negative"
        )
        if return_loss and output.target_embeds is not None:
            output.loss = self.contrastive_loss(
                output.query_embeds,
                output.target_embeds,
                negative_embeds=output.negative_embeds,
                negative_mask=negative_mask,
                caption_embeds=output.caption_embeds,
            )
        return output

    # ----- serialisation --------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        combiner_only: bool = False,
        model_card: dict | None = None,
        **kwargs,
    ) -> None:
        """Save config, safetensors weights, processor files and a model card (README.md).

        With `combiner_only=True` the weights file holds only the Combiner (and logit scale), and the
        config names the encoder (`clip_name_or_path`) that `from_pretrained` loads it from.
        `model_card` holds extra card fields for [`write_model_card`] (`repo_id`, `training`,
        `datasets`, `eval_results`).
        """
        if combiner_only:
            if not self.config.clip_name_or_path:
                raise ValueError(
                    "combiner_only=True needs config.clip_name_or_path (the Hub id or folder of the encoder); "
                    "build the model with ScotModel.from_clip(id_or_folder) or set it"
                )
            kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if not k.startswith(ENCODER_PREFIX)}
        saved_flag = self.config.combiner_only
        self.config.combiner_only = combiner_only
        try:
            super().save_pretrained(save_directory, **kwargs)
            card_config = self.config.to_dict()
        finally:
            self.config.combiner_only = saved_flag
        if self.processor is not None:
            self.processor.save_pretrained(save_directory)
        write_model_card(save_directory, card_config, **(model_card or {}))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        combiner_only: bool = False,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Save to a temporary folder (as `save_pretrained` does) and upload it; returns the commit URL."""
        from .hub_upload import upload_model_folder

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, combiner_only=combiner_only)
            return upload_model_folder(
                folder,
                repo_id,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, config=None, **kwargs):
        """Load a saved SCOT model (full or `combiner_only`) from a folder or Hub id."""
        source = os.fspath(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        if config is None:
            config = cls._read_config(source, hub_kwargs)
        if config.combiner_only:
            model = cls._from_combiner_only(source, config, kwargs, hub_kwargs)
        else:
            model = super().from_pretrained(source, *model_args, config=config, **kwargs)
        model.processor = _load_processor(source, hub_kwargs)
        return model

    @classmethod
    def _read_config(cls, source: str, hub_kwargs: dict) -> ScotConfig:
        if Path(source).exists() and not (Path(source) / "config.json").is_file():
            raise ValueError(f"{source!r} is not a saved SCOT model: it has no config.json")
        config_dict, _ = ScotConfig.get_config_dict(source, **hub_kwargs)
        if config_dict.get("model_type") != ScotConfig.model_type:
            raise ValueError(
                f"{source!r} holds a {config_dict.get('model_type')!r} model, not a SCOT model; "
                "to wrap a CLIP checkpoint use ScotModel.from_clip"
            )
        return ScotConfig.from_dict(config_dict)

    @classmethod
    def _from_combiner_only(cls, source: str, config: ScotConfig, kwargs: dict, hub_kwargs: dict) -> ScotModel:
        load_kwargs = {k: kwargs[k] for k in ("dtype", "attn_implementation") if kwargs.get(k) is not None}
        clip_model = load_dual_encoder(config.clip_name_or_path, **load_kwargs)
        config.combiner_only = False
        model = cls._around(config, clip_model)
        weights_file = cached_file(source, WEIGHTS_NAME, **hub_kwargs)
        state_dict = load_file(weights_file)
        expected = {k for k in model.state_dict() if not k.startswith(ENCODER_PREFIX)}
        if set(state_dict) != expected:
            raise ValueError(
                f"{weights_file} does not hold a SCOT Combiner: missing {sorted(expected - set(state_dict))}, "
                f"unexpected {sorted(set(state_dict) - expected)}"
            )
        model.load_state_dict(state_dict, strict=False)
        if load_kwargs.get("dtype") not in (None, "auto"):
            model.to(load_kwargs["dtype"])
        return model.eval()


__all__ = ["Combiner", "ScotModel", "ScotOutput", "load_dual_encoder"]
