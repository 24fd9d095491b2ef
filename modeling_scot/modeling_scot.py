"""SCOT: a frozen dual encoder (CLIP, SigLIP, SigLIP 2, BLIP-2) and a trainable Combiner for composed image
retrieval."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoProcessor, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file, logging

from .activations import use_inference_activations
from .configuration_scot import LEGACY_FIELDS, ScotConfig, check_encoder_family, one_line
from .encoders import DualEncoderAdapter, adapter_class, adapter_for, text_matched
from .losses import scot_contrastive_loss

logger = logging.get_logger(__name__)

ENCODER_PREFIX = "encoder."
LEGACY_PREFIX = "clip."
"""Weight names of models saved by 0.1.0 start with this: their encoder attribute was `clip`."""
LEGACY_KEY_MAPPING = {r"^clip\.": ENCODER_PREFIX}
"""The renaming of 0.1.0's weight names on load (transformers' `key_mapping`, patterns to replacements)."""
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
SHOWN = 5
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json")
ENCODER_CONFIG_FIELDS = ("encoder_config", *(old for old, new in LEGACY_FIELDS.items() if new == "encoder_config"))
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
    """

    loss: torch.Tensor | None = None
    query_embeds: torch.Tensor | None = None
    modality_weight: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    target_embeds: torch.Tensor | None = None
    negative_embeds: torch.Tensor | None = None
    caption_embeds: torch.Tensor | None = None


class Combiner(nn.Module):
    """Fuses an image and a text embedding: `w * text + (1 - w) * image + fused`, L2-normalised.

    Both inputs are projected and concatenated; one MLP predicts the residual `fused`, another the
    input-dependent modality weight `w` in (0, 1).
    """

    def __init__(self, embed_dim: int, projection_dim: int, hidden_dim: int, dropout: float = 0.1):
        super().__init__()
        self.image_projection = nn.Sequential(nn.Linear(embed_dim, projection_dim), nn.ReLU(), nn.Dropout(dropout))
        self.text_projection = nn.Sequential(nn.Linear(embed_dim, projection_dim), nn.ReLU(), nn.Dropout(dropout))
        self.fusion = nn.Sequential(
            nn.Linear(2 * projection_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, embed_dim)
        )
        self.modality_gate = nn.Sequential(
            nn.Linear(2 * projection_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the normalised composed embedding (B, D) and the text weight w (B,)."""
        joint = torch.cat([self.image_projection(image_embeds), self.text_projection(text_embeds)], dim=-1)
        weight = torch.sigmoid(self.modality_gate(joint))
        composed = weight * text_embeds + (1 - weight) * image_embeds + self.fusion(joint)
        return F.normalize(composed, dim=-1), weight.squeeze(-1)


def _check_tensor(value, name: str, ndims: tuple[int, ...], floating: bool) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {tuple(value.shape)}")
    if value.is_floating_point() != floating:
        kind = "a floating-point" if floating else "an integer"
        raise ValueError(f"{name} must be {kind} tensor, got dtype {value.dtype}")


def load_dual_encoder(source: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """Load a transformers dual encoder (CLIP, SigLIP, SigLIP 2, BLIP-2's retrieval model) from a Hub id or a local
    folder, weights from safetensors files only.

    `kwargs` go to the family's `from_pretrained` (`dtype`, `attn_implementation`, hub options).
    """
    source = os.fspath(source)
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"dual encoder folder {source!r} does not exist")
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{source!r} is not a dual-encoder checkpoint (CLIP, SigLIP, SigLIP 2, BLIP-2): it has no config.json"
            )
    try:
        config = AutoConfig.from_pretrained(source, **{k: v for k, v in kwargs.items() if k in HUB_KWARGS})
    except Exception as err:  # transformers' config machinery fails on bad files with many error types
        raise ValueError(f"cannot read a model config from {source!r}: {one_line(err)}") from None
    adapter = adapter_class(config.model_type, repr(source))
    adapter.check_config(config, repr(source))
    try:
        model = adapter.model_class.from_pretrained(source, config=config, use_safetensors=True, **kwargs)
    except (OSError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"cannot load the weights of {source!r}: {one_line(err)}") from None
    adapter.check_model(model, repr(source))
    return model


class ScotModel(PreTrainedModel):
    r"""A frozen dual encoder and a trainable [`Combiner`] producing composed queries f(V, T_m).

    The encoder (attribute `encoder`, reached through its family's adapter `encoder_adapter`) never trains: its
    parameters have `requires_grad=False` and it stays in eval mode under `model.train()`. Trainable parameters
    are the Combiner's and, with `learnable_temperature`, the `logit_scale`.
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

    # Set by the installed package (modeling_scot/__init__.py). A model loaded as remote code from a saved folder
    # has none: it loads its processor with AutoProcessor, saves without a model card and pushes with transformers.
    processor_class: ClassVar[type | None] = None
    card_writer: ClassVar[Callable[..., None] | None] = None
    folder_uploader: ClassVar[Callable[..., str] | None] = None

    def __init__(self, config: ScotConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        if encoder is None:
            encoder = adapter_class(config.encoder_config.model_type, "ScotConfig.encoder_config").build(
                config.encoder_config
            )
        self.encoder = encoder
        self.encoder_adapter: DualEncoderAdapter = adapter_for(self.encoder, "ScotConfig.encoder_config")
        self.encoder.requires_grad_(False)
        use_inference_activations(self.encoder)
        self.combiner = Combiner(config.embed_dim, config.projection_dim, config.hidden_dim, config.combiner_dropout)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1 / config.temperature)), requires_grad=config.learnable_temperature
        )
        self.processor = None
        self.post_init()
        self.encoder.eval()

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
            if child is not self.encoder:
                child.train(mode)
        if self.encoder.training:
            self.encoder.eval()
        return self

    @classmethod
    def from_encoder(
        cls,
        encoder: str | os.PathLike | PreTrainedModel,
        *,
        processor=None,
        dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        **config_overrides,
    ) -> ScotModel:
        """Build a SCOT model with a fresh Combiner around a pretrained dual encoder.

        Args:
            encoder: a Hub id or local folder of a CLIP, SigLIP, SigLIP 2 or BLIP-2 retrieval checkpoint, or a
                loaded model.
            processor: the matching processor (default: loaded from `encoder` when it is an id or folder).
            dtype: dtype of the encoder weights (e.g. `torch.bfloat16` on GPU).
            attn_implementation: "sdpa", "eager", ... passed to the encoder.
            config_overrides: [`ScotConfig`] fields (Combiner sizes, temperature, loss weights).
        """
        unknown = set(config_overrides) - {f.name for f in fields(ScotConfig)}
        if unknown:
            raise ValueError(f"unknown ScotConfig fields: {sorted(unknown)}")
        if isinstance(encoder, PreTrainedModel):
            encoder_model, name = encoder, (encoder.config.name_or_path or None)
        elif isinstance(encoder, (str, os.PathLike)):
            load_kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
            encoder_model = load_dual_encoder(encoder, **{k: v for k, v in load_kwargs.items() if v is not None})
            name = os.fspath(encoder)
        else:
            raise ValueError(f"encoder must be a Hub id, a folder or a PreTrainedModel, got {type(encoder).__name__}")
        model = cls._around(ScotConfig(encoder_name_or_path=name, **config_overrides), encoder_model)
        model.processor = processor if processor is not None or name is None else cls._load_processor(name, {})
        return model

    from_clip = from_encoder
    """The name of [`from_encoder`] in 0.1.0 and in the examples of CLIP-based methods."""

    @classmethod
    def _around(cls, config: ScotConfig, encoder: PreTrainedModel) -> ScotModel:
        """A model whose config shares the loaded encoder's config (and its attention implementation)."""
        check_encoder_family(encoder.config.model_type, f"the given {type(encoder).__name__}")
        config.encoder_config = encoder.config
        config._attn_implementation = encoder.config._attn_implementation
        return cls(config, encoder=encoder)

    def compile_encoders(self, **compile_kwargs) -> ScotModel:
        """`torch.compile` the encoder's vision and text towers in place (for large GPU jobs)."""
        for tower in (self.encoder_adapter.vision_tower, self.encoder_adapter.text_tower):
            tower.compile(**compile_kwargs)
        return self

    # ----- encoders -------------------------------------------------------------------------------

    @torch.no_grad()
    def get_image_features(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """L2-normalised image embeddings (B, D) from the frozen encoder (float32)."""
        _check_tensor(pixel_values, "pixel_values", (3, 4), floating=True)
        return self.encoder_adapter.image_embeds(pixel_values, **image_kwargs)

    @torch.no_grad()
    def get_image_vectors(self, pixel_values: torch.Tensor, **image_kwargs) -> torch.Tensor:
        """L2-normalised image vectors (B, K, D) from the frozen encoder (float32): K = 1 for encoders that pool
        an image to one vector, one per query token for BLIP-2. Gallery images are scored by their best vector."""
        _check_tensor(pixel_values, "pixel_values", (3, 4), floating=True)
        return self.encoder_adapter.image_vectors(pixel_values, **image_kwargs)

    @torch.no_grad()
    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text embeddings from the frozen encoder (float32).

        `input_ids` may be (B, L) or (B, K, L); the result is (B, D) or (B, K, D).
        """
        _check_tensor(input_ids, "input_ids", (2, 3), floating=False)
        vocab_size = self.encoder_adapter.vocab_size
        if input_ids.numel():
            lowest, highest = (int(value) for value in torch.aminmax(input_ids))
            if lowest < 0 or highest >= vocab_size:
                raise ValueError(
                    f"input_ids hold token ids from {lowest} to {highest}, outside the text encoder's vocabulary "
                    f"of {vocab_size}: were they made by another model's tokenizer?"
                )
        leading = input_ids.shape[:-1]
        flat_ids = input_ids.reshape(-1, input_ids.shape[-1])
        flat_mask = None if attention_mask is None else attention_mask.reshape(flat_ids.shape)
        embeds = self.encoder_adapter.text_embeds(flat_ids, flat_mask)
        return embeds.reshape(*leading, embeds.shape[-1])

    # ----- composition and loss -------------------------------------------------------------------

    @property
    def pools_with_text(self) -> bool:
        """Whether V depends on the modification text: a multi-vector encoder with `image_pooling="text_matched"`
        (its reference images are then embedded, and cached, as all K vectors)."""
        return self.encoder_adapter.multi_vector and self.config.image_pooling == "text_matched"

    def pool_image(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """V (B, D) of reference images: (B, D) embeddings as they are, (B, K, D) vectors pooled as
        `config.image_pooling` says (with `text_embeds` (B, D), the modification texts, for `text_matched`)."""
        if image_embeds.ndim == 2:
            return image_embeds
        if self.pools_with_text:
            return text_matched(image_embeds, text_embeds)
        return self.encoder_adapter.pooled(image_embeds)

    def compose(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> ScotOutput:
        """Run the Combiner on (cached) image embeddings (B, D), or image vectors (B, K, D) that `pool_image`
        pools, and text embeddings (B, D)."""
        _check_tensor(image_embeds, "image_embeds", (2, 3), floating=True)
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
        image_embeds = self.pool_image(image_embeds, text_embeds).to(dtype)
        text_embeds = text_embeds.to(dtype)
        query_embeds, weight = self.combiner(image_embeds, text_embeds)
        return ScotOutput(query_embeds=query_embeds, modality_weight=weight, image_embeds=image_embeds, text_embeds=text_embeds)

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
        return_loss: bool = True,
        **image_kwargs,
    ) -> ScotOutput:
        r"""Compose reference images with modification texts; add the SCOT loss when targets are given.

        Args:
            pixel_values: (B, C, H, W) reference images, or give `image_embeds` (B, D) or (B, K, D) instead.
            input_ids, attention_mask: (B, L) modification texts T_m, or give `text_embeds` (B, D).
            target_input_ids, target_attention_mask: (B, L) modified captions u (the positives),
                or `target_embeds` (B, D).
            negative_input_ids, negative_attention_mask: (B, K, L) hard-negative captions, or
                `negative_embeds` (B, K, D); `negative_mask` (B, K) is False on padding slots.
            caption_input_ids, caption_attention_mask: (B, L) original captions c, or `caption_embeds`.
            return_loss: compute the loss whenever targets are given (set False to skip it).
            image_kwargs: extra encoder image inputs (SigLIP 2's `pixel_attention_mask`, `spatial_shapes`).
        """
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError("give pixel_values or image_embeds for the reference images")
            embed = self.get_image_vectors if self.pools_with_text else self.get_image_features
            image_embeds = embed(pixel_values, **image_kwargs)
        elif pixel_values is not None:
            raise ValueError("give either pixel_values or image_embeds, not both")
        text_embeds = self._embed_or_take(text_embeds, input_ids, attention_mask, "text")
        if text_embeds is None:
            raise ValueError("give input_ids or text_embeds for the modification texts")
        output = self.compose(image_embeds, text_embeds)
        output.target_embeds = self._embed_or_take(target_embeds, target_input_ids, target_attention_mask, "target")
        output.caption_embeds = self._embed_or_take(caption_embeds, caption_input_ids, caption_attention_mask, "caption")
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
        """Save config, safetensors weights, processor files and (with the package installed) a model card.

        With `combiner_only=True` the weights file holds only the Combiner (and logit scale), and the
        config names the encoder (`encoder_name_or_path`) that `from_pretrained` loads it from.
        `model_card` holds extra card fields for the card writer (`repo_id`, `training`, `datasets`,
        `eval_results`).
        """
        if combiner_only:
            if not self.config.encoder_name_or_path:
                raise ValueError(
                    "combiner_only=True needs config.encoder_name_or_path (the Hub id or folder of the encoder); "
                    "build the model with ScotModel.from_encoder(id_or_folder) or set it"
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
        if self.card_writer is not None:
            self.card_writer(save_directory, card_config, **(model_card or {}))

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
        hub_kwargs = {"private": private, "token": token, "revision": revision, "commit_message": commit_message}
        if self.folder_uploader is None:
            if combiner_only:
                raise ValueError("combiner_only pushes need the modeling_scot package installed")
            return super().push_to_hub(repo_id, create_pr=create_pr, **hub_kwargs)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, combiner_only=combiner_only)
            return self.folder_uploader(folder, repo_id, create_pr=create_pr, **hub_kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, config=None, **kwargs):
        """Load a saved SCOT model (full or `combiner_only`, written by this version or by 0.1.0) from a folder
        or Hub id.

        Before any weights load, config.json is checked (an object whose fields have the right types) and the
        safetensors header is checked against it (readable; the expected tensor names, shapes and kinds); a
        Combiner holding NaN or infinite values is refused. Each problem is a ValueError naming the file.
        Weights load only from safetensors files.
        """
        source = os.fspath(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        legacy = False
        if config is None:
            config, legacy = cls._read_config(source, hub_kwargs)
        if config.combiner_only:
            model, saved = cls._from_combiner_only(source, config, kwargs, hub_kwargs)
        else:
            saved = _saved_tensors(_weight_files(source, hub_kwargs), LEGACY_PREFIX if legacy else None)
            _check_saved_tensors(saved, cls._meta_state(config, source, len(saved)), "a SCOT model")
            if legacy:
                kwargs.setdefault("key_mapping", LEGACY_KEY_MAPPING)
            model = super().from_pretrained(source, *model_args, config=config, use_safetensors=True, **kwargs)
            if legacy:  # save with this version's names, not by reverting the renaming applied on load
                model._weight_conversions = None
        _check_finite(model, saved)
        model.processor = cls._load_processor(source, hub_kwargs, saved=True)
        if model.processor is not None:
            _check_processor(model.processor, config, source)
        return model

    @classmethod
    def _read_config(cls, source: str, hub_kwargs: dict) -> tuple[ScotConfig, bool]:
        """The saved config, and whether 0.1.0 wrote it (its weights name the encoder `clip`)."""
        if Path(source).exists() and not (Path(source) / CONFIG_NAME).is_file():
            raise ValueError(f"{source!r} is not a saved SCOT model: it has no {CONFIG_NAME}")
        config_file = cached_file(source, CONFIG_NAME, **hub_kwargs)
        config_dict = _read_json_object(config_file)
        if config_dict.get("model_type") != ScotConfig.model_type:
            raise ValueError(
                f"{config_file}: field 'model_type' is {config_dict.get('model_type')!r}, so {source!r} is not a "
                "SCOT model; to wrap a CLIP, SigLIP, SigLIP 2 or BLIP-2 retrieval checkpoint use ScotModel.from_encoder"
            )
        if not config_dict.get("combiner_only") and all(config_dict.get(f) is None for f in ENCODER_CONFIG_FIELDS):
            raise ValueError(f"{config_file}: field 'encoder_config' is missing or null: a full save records its encoder")
        for name in ("dtype", "torch_dtype"):
            value = config_dict.get(name)
            if value is not None and not isinstance(getattr(torch, str(value), None), torch.dtype):
                raise ValueError(f"{config_file}: field {name!r} must name a torch dtype ('float32', ...), got {value!r}")
        try:
            config = ScotConfig.from_dict(config_dict)
        except Exception as error:  # transformers' config machinery fails on bad fields with many error types
            raise ValueError(f"{config_file}: {one_line(error)}") from None
        return config, any(name in config_dict for name in LEGACY_FIELDS)

    @classmethod
    def _meta_state(cls, config: ScotConfig, source: str, tensor_count: int | None) -> dict[str, torch.Tensor]:
        """The tensors of the model `config` describes, built on the meta device (shapes and dtypes, no memory).

        With `tensor_count` (the saved encoder's weights file), an encoder config with more layers than that
        file has tensors is refused first."""
        where = f"{source}/{CONFIG_NAME}"
        for name, value in _layer_counts(config.encoder_config.to_dict(), "encoder_config"):
            if tensor_count is not None and value > tensor_count:
                raise ValueError(
                    f"{where}: {name} is {value}, but the weights file holds only {tensor_count} tensors in all"
                )
        try:
            with torch.device("meta"):
                return cls(config).state_dict()
        except Exception as error:  # building modules from bad sizes fails with many error types
            raise ValueError(f"{where} describes a model that cannot be built: {one_line(error)}") from None

    @classmethod
    def _load_processor(cls, source: str, hub_kwargs: dict, *, saved: bool = False):
        """The processor saved with `source`, or None where it has none. Without the package (this class loaded as
        remote code from `source`), the processor's code comes from `source` too.

        With `saved` (a folder written by `save_pretrained`), processor files that exist but cannot be loaded
        are a ValueError naming them."""
        try:
            if cls.processor_class is not None:
                return cls.processor_class.from_pretrained(source, trust_remote_code=False, **hub_kwargs)
            return AutoProcessor.from_pretrained(source, trust_remote_code=True, **hub_kwargs)
        except Exception as err:  # tokenizer and image-processor files fail to parse with many error types
            present = [name for name in PROCESSOR_FILES if saved and _optional_file(source, name, hub_kwargs)]
            if present:
                raise ValueError(f"{source}: its processor files {present} cannot be loaded: {one_line(err)}") from None
            logger.info(f"no processor loaded from {source}: {err}")
            return None

    @classmethod
    def _from_combiner_only(
        cls, source: str, config: ScotConfig, kwargs: dict, hub_kwargs: dict
    ) -> tuple[ScotModel, dict[str, SavedTensor]]:
        """The encoder loaded from `encoder_name_or_path` around the Combiner saved at `source`, and the saved
        tensors."""
        if not config.encoder_name_or_path:
            raise ValueError(
                f"{source}/{CONFIG_NAME}: a combiner_only model needs encoder_name_or_path, the encoder to load"
            )
        load_kwargs = {k: kwargs[k] for k in ("dtype", "attn_implementation") if kwargs.get(k) is not None}
        try:
            encoder = load_dual_encoder(config.encoder_name_or_path, **load_kwargs)
        except (ValueError, OSError) as err:
            raise ValueError(f"{source}/{CONFIG_NAME}: field 'encoder_name_or_path': {err}") from None
        config.combiner_only = False
        config.encoder_config = encoder.config
        saved = _saved_tensors(_weight_files(source, hub_kwargs))
        meta_state = cls._meta_state(config, source, None)
        expected = {k: v for k, v in meta_state.items() if not k.startswith(ENCODER_PREFIX)}
        _check_saved_tensors(saved, expected, "a SCOT Combiner")
        model = cls._around(config, encoder)
        for file in dict.fromkeys(entry.file for entry in saved.values()):
            model.load_state_dict(load_file(file), strict=False)
        if load_kwargs.get("dtype") not in (None, "auto"):
            model.to(load_kwargs["dtype"])
        return model.eval(), saved


@dataclass(frozen=True)
class SavedTensor:
    """A tensor's entry in a safetensors header: its shape, dtype name (`F32`, `BF16`, `I64`, ...) and file."""

    shape: tuple[int, ...]
    dtype: str
    file: str

    @property
    def is_floating_point(self) -> bool:
        return self.dtype.startswith(("F", "BF"))


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:SHOWN])
    return shown + (f" ... ({len(names)} in all)" if len(names) > SHOWN else "")


def _read_json_object(file: str) -> dict:
    """The JSON object in `file`; a ValueError naming the file when it is not JSON or not an object."""
    try:
        data = ScotConfig._dict_from_json_file(file)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data


def _layer_counts(config: dict, where: str) -> Iterator[tuple[str, int]]:
    """(`where.path.name`, value) of every integer layer count (`num_hidden_layers`, ...) in a nested config dict."""
    for name, value in config.items():
        if isinstance(value, dict):
            yield from _layer_counts(value, f"{where}.{name}")
        elif isinstance(name, str) and name.startswith("num_") and name.endswith("layers") and isinstance(value, int):
            yield f"{where}.{name}", value


def _optional_file(source: str, name: str, hub_kwargs: dict) -> str | None:
    """The local path of file `name` of a folder or Hub repo, or None where it has none."""
    return cached_file(
        source,
        name,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )


def _weight_files(source: str, hub_kwargs: dict) -> list[str]:
    """The safetensors file(s) of a saved model: `model.safetensors`, or the shards its index lists."""
    single = _optional_file(source, WEIGHTS_NAME, hub_kwargs)
    if single is not None:
        return [single]
    index = _optional_file(source, WEIGHTS_INDEX_NAME, hub_kwargs)
    if index is None:
        raise FileNotFoundError(
            f"{source} has no {WEIGHTS_NAME}: SCOT models load their weights from safetensors files only"
        )
    weight_map = _read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index}: field 'weight_map' must map tensor names to shard file names")
    return [cached_file(source, shard, **hub_kwargs) for shard in sorted(set(weight_map.values()))]


def _saved_tensors(files: list[str], legacy_prefix: str | None = None) -> dict[str, SavedTensor]:
    """Every tensor named in the headers of `files`, without reading data; names starting with `legacy_prefix`
    (0.1.0's encoder) are renamed as they load."""
    saved = {}
    for file in files:
        try:
            with safe_open(file, "pt") as handle:
                for name in handle.keys():
                    entry = handle.get_slice(name)
                    if legacy_prefix and name.startswith(legacy_prefix):
                        name = ENCODER_PREFIX + name[len(legacy_prefix) :]
                    saved[name] = SavedTensor(tuple(entry.get_shape()), entry.get_dtype(), file)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{file} is not a readable safetensors file: {one_line(error)}") from None
    return saved


def _check_saved_tensors(saved: dict[str, SavedTensor], expected: dict[str, torch.Tensor], what: str) -> None:
    """Raise a ValueError naming the file and the tensors when the saved ones are not those of `expected`."""
    files = ", ".join(dict.fromkeys(entry.file for entry in saved.values())) or "the weights file"
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{files} does not hold {what} of the saved config: missing tensors [{_listed(missing)}], "
            f"unexpected tensors [{_listed(unexpected)}]"
        )
    for name, tensor in expected.items():
        entry = saved[name]
        if entry.shape != tuple(tensor.shape):
            raise ValueError(
                f"{entry.file}: tensor {name!r} has shape {list(entry.shape)}, the saved config describes "
                f"{list(tensor.shape)}"
            )
        if entry.is_floating_point != tensor.is_floating_point():
            raise ValueError(f"{entry.file}: tensor {name!r} is stored as {entry.dtype}, expected {tensor.dtype}")


def _check_processor(processor, config: ScotConfig, source: str) -> None:
    """Run a loaded processor once on a tiny image and text: some bad settings in its files (a list for
    `model_max_length`, a dict for a mean, a zero std) load but fail on use or make non-finite pixels. Where the
    encoder takes square images of one size, the processor must make them."""
    try:
        pixels = processor(images=torch.zeros(3, 8, 8, dtype=torch.uint8), text=["a photo"]).get("pixel_values")
    except Exception as err:  # the tokenizer and image processor fail on bad settings with many error types
        raise ValueError(f"{source}: its processor files do not work: {one_line(err)}") from None
    if pixels is not None and not torch.isfinite(pixels).all():
        raise ValueError(f"{source}: its processor files make NaN or infinite pixel values (an image_std of 0?)")
    size = getattr(getattr(config.encoder_config, "vision_config", None), "image_size", None)
    if isinstance(size, int) and pixels is not None and pixels.ndim == 4 and tuple(pixels.shape[-2:]) != (size, size):
        raise ValueError(
            f"{source}: its processor files make {tuple(pixels.shape[-2:])} images, the encoder takes ({size}, {size})"
        )


def _check_finite(model: ScotModel, saved: dict[str, SavedTensor]) -> None:
    """Refuse a trained part (Combiner, logit scale) that holds NaN or infinite values, naming its file."""
    for name, tensor in model.state_dict().items():
        if name.startswith(ENCODER_PREFIX) or not tensor.is_floating_point() or name not in saved:
            continue
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{saved[name].file}: tensor {name!r} holds NaN or infinite values")


__all__ = ["Combiner", "ScotModel", "ScotOutput", "load_dual_encoder"]
