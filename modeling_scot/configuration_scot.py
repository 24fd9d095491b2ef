"""Configuration of a SCOT model: a frozen dual encoder (CLIP, SigLIP, SigLIP 2) plus a trainable Combiner."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

SCOT_VERSION = "0.2.0"
ENCODER_FAMILIES = ("clip", "siglip", "siglip2")
"""`model_type`s of the dual encoders a SCOT model wraps (one adapter each in `encoders.py`)."""
LEGACY_FIELDS = {"clip_config": "encoder_config", "clip_name_or_path": "encoder_name_or_path"}
"""Fields of configs written by modeling_scot 0.1.0 and the fields that replace them."""


def _model_type(encoder_config: dict | PreTrainedConfig | None) -> str | None:
    if isinstance(encoder_config, PreTrainedConfig):
        return encoder_config.model_type
    if isinstance(encoder_config, dict):
        return encoder_config.get("model_type", "clip")
    return None


def check_encoder_family(model_type: str | None, source: str = "ScotConfig.encoder_config") -> None:
    """Raise a ValueError naming `model_type` and the supported families when SCOT has no adapter for it."""
    if model_type is not None and model_type not in ENCODER_FAMILIES:
        raise ValueError(
            f"{source} is a {model_type!r} model; SCOT supports the dual-encoder families {list(ENCODER_FAMILIES)}"
        )


def _reject_region_grid(kwargs: dict) -> None:
    grid = kwargs.pop("region_grid", 0)
    kwargs.pop("region_temperature", None)
    if grid:
        raise ValueError(
            f"this config was saved by modeling_scot 0.1.0 with grid-region referents (region_grid={grid}), which "
            "only work on the built-in world's uniform backgrounds and are no longer part of the model. Retrain a "
            "plain Combiner (scot quickstart, or scot train on your triplets), or load this model with "
            "pip install 'modeling-scot==0.1.0'"
        )


class ScotConfig(PreTrainedConfig):
    r"""Configuration of [`ScotModel`].

    Args:
        encoder_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the frozen dual encoder: a `clip`, `siglip` or `siglip2` model config; a dict without
            `model_type` is read as a CLIP config.
        encoder_name_or_path (`str`, *optional*):
            Hub id or folder the dual encoder was loaded from. Required for `combiner_only` saves, whose
            weights file holds the Combiner alone and which reload the encoder from here.
        combiner_only (`bool`):
            Set by `save_pretrained(..., combiner_only=True)`: the saved weights hold no encoder.
        combiner_projection_dim (`int`, *optional*):
            Width of the image and text projections inside the Combiner (default: 2 x embedding dim).
        combiner_hidden_dim (`int`, *optional*):
            Width of the fusion MLP and of the modality-weight branch (default: 2 x embedding dim).
        combiner_dropout (`float`):
            Dropout inside the Combiner during training.
        temperature (`float`):
            Softmax temperature of the contrastive loss (the logit scale is its inverse).
        learnable_temperature (`bool`):
            Train the logit scale with the Combiner (it lives outside the frozen encoder).
        max_logit_scale (`float`):
            Upper clamp of a learnable logit scale, as in CLIP.
        hard_negative_weight (`float`):
            Weight w_h of the hard-negative captions in the loss denominator (0 drops them).
        caption_negative_weight (`float`):
            Weight w_c of the original caption in the loss denominator (0 drops it).
        scot_version (`str`):
            Version of `modeling_scot` that wrote this config.

    Configs written by 0.1.0 (`clip_config`, `clip_name_or_path`) load into the fields above.
    """

    model_type = "scot"
    keys_to_ignore_at_inference = ["modality_weight", "image_embeds", "text_embeds", "negative_embeds", "caption_embeds"]
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="clip")}

    encoder_config: dict | PreTrainedConfig | None = None
    encoder_name_or_path: str | None = None
    combiner_only: bool = False
    combiner_projection_dim: int | None = None
    combiner_hidden_dim: int | None = None
    combiner_dropout: float = 0.1
    temperature: float = 0.05
    learnable_temperature: bool = False
    max_logit_scale: float = 100.0
    hard_negative_weight: float = 1.0
    caption_negative_weight: float = 1.0
    scot_version: str = SCOT_VERSION

    def __post_init__(self, **kwargs):
        for legacy, field in LEGACY_FIELDS.items():
            value = kwargs.pop(legacy, None)
            if value is not None and getattr(self, field) is None:
                setattr(self, field, value)
        _reject_region_grid(kwargs)
        check_encoder_family(_model_type(self.encoder_config))
        super().__post_init__(**kwargs)
        if self.temperature <= 0:
            raise ValueError(f"ScotConfig.temperature must be > 0, got {self.temperature}")
        for name in ("hard_negative_weight", "caption_negative_weight", "combiner_dropout"):
            if getattr(self, name) < 0:
                raise ValueError(f"ScotConfig.{name} must be >= 0, got {getattr(self, name)}")
        self.scot_version = SCOT_VERSION

    @property
    def embed_dim(self) -> int:
        """Dimension of the encoder's joint embedding space."""
        encoder = self.encoder_config
        for name in ("projection_dim", "hidden_size"):
            if isinstance(getattr(encoder, name, None), int):
                return getattr(encoder, name)
        return encoder.text_config.hidden_size

    @property
    def projection_dim(self) -> int:
        """Resolved width of the Combiner's input projections."""
        return self.combiner_projection_dim or 2 * self.embed_dim

    @property
    def hidden_dim(self) -> int:
        """Resolved width of the Combiner's fusion and weight branches."""
        return self.combiner_hidden_dim or 2 * self.embed_dim


__all__ = ["ENCODER_FAMILIES", "SCOT_VERSION", "ScotConfig", "check_encoder_family"]
