"""Configuration of a SCOT model: a frozen dual encoder (CLIP, SigLIP, SigLIP 2, BLIP-2) and a trainable Combiner."""

from __future__ import annotations

import math
from collections.abc import Callable

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

SCOT_VERSION = "0.2.0"
ENCODER_FAMILIES = ("clip", "siglip", "siglip2", "blip-2")
"""`model_type`s of the dual encoders a SCOT model wraps (one adapter each in `encoders.py`)."""
IMAGE_POOLINGS = ("mean", "text_matched")
"""How a multi-vector encoder's K image vectors become the one vector V the Combiner reads (see `ScotConfig`)."""
LEGACY_FIELDS = {"clip_config": "encoder_config", "clip_name_or_path": "encoder_name_or_path"}
"""Fields of configs written by modeling_scot 0.1.0 and the fields that replace them."""


SIZE_PREFIX, SIZE_SUFFIXES = "num_", ("_size", "_dim", "_embeddings", "_patches")
"""Integer fields of an encoder config named so size tensors, so must be >= 1 (`hidden_size`, `num_hidden_layers`)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


FIELD_RULES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "encoder_name_or_path": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "combiner_only": ("true or false", lambda v: isinstance(v, bool)),
    "combiner_projection_dim": ("an int >= 1 or null", lambda v: v is None or _is_int(v) and v >= 1),
    "combiner_hidden_dim": ("an int >= 1 or null", lambda v: v is None or _is_int(v) and v >= 1),
    "combiner_dropout": ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "temperature": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "learnable_temperature": ("true or false", lambda v: isinstance(v, bool)),
    "max_logit_scale": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "hard_negative_weight": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "caption_negative_weight": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "image_pooling": (f"one of {list(IMAGE_POOLINGS)}", lambda v: v in IMAGE_POOLINGS),
}
"""What each ScotConfig field must hold, and the check."""


def one_line(error: BaseException) -> str:
    """An error's message on one line (some carry indented multi-line details)."""
    return " ".join(str(error).split())


def check_encoder_config(data: object, where: str = "ScotConfig.encoder_config") -> None:
    """Raise a ValueError naming the entry (`where.text_config`, ...) and the field when `data`, a dual encoder's
    config as a dict, is not one of a supported family: not an object, a sub-config that is not an object, a
    field of the wrong type, or a size field below 1."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object (an encoder config), got {type(data).__name__}")
    check_encoder_family(_model_type(data), where)
    _check_sub_config(data, CONFIG_MAPPING[_model_type(data)], where)


def _check_sub_config(data: object, config_class: type[PreTrainedConfig], where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    if config_class is AutoConfig:  # a sub-config of any model type (BLIP-2's text_config)
        if data.get("model_type") not in CONFIG_MAPPING:
            found = data.get("model_type")
            raise ValueError(f"{where}: field 'model_type' must name a transformers model, got {found!r}")
        config_class = CONFIG_MAPPING[data["model_type"]]
    sub_configs = getattr(config_class, "sub_configs", {})
    for name, sub_class in sub_configs.items():
        if data.get(name) is not None and not isinstance(data[name], PreTrainedConfig):
            _check_sub_config(data[name], sub_class, f"{where}.{name}")
    for name, value in data.items():
        sizes = isinstance(name, str) and (name.startswith(SIZE_PREFIX) or name.endswith(SIZE_SUFFIXES))
        if sizes and _is_int(value) and value < 1:
            raise ValueError(f"{where}: field {name!r} sizes the encoder's tensors and must be >= 1, got {value}")
    fields = {name: value for name, value in data.items() if name not in sub_configs}
    try:
        config_class(**fields)
    except Exception as error:  # the config classes validate their fields with several error types
        raise ValueError(f"{where}: {one_line(error)}") from None


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
            Config of the frozen dual encoder: a `clip`, `siglip`, `siglip2` or `blip-2` (retrieval) model config;
            a dict without `model_type` is read as a CLIP config.
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
        image_pooling (`str`):
            How the K image vectors of a multi-vector encoder (BLIP-2's query tokens) become V: `"text_matched"`
            (the default), the vector closest to the modification text T_m, the one through which BLIP-2 scores
            that text against the image and the only one its contrastive training aligns with text (the training
            cache then keeps all K vectors of each image); or `"mean"`, their normalised mean, one vector per image
            whatever the text. Encoders with one vector per image ignore it.
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
    image_pooling: str = "text_matched"
    scot_version: str = SCOT_VERSION

    def __post_init__(self, **kwargs):
        for legacy, field in LEGACY_FIELDS.items():
            value = kwargs.pop(legacy, None)
            if value is not None and getattr(self, field) is None:
                setattr(self, field, value)
        _reject_region_grid(kwargs)
        for name, (expected, holds) in FIELD_RULES.items():
            if not holds(getattr(self, name)):
                raise ValueError(f"ScotConfig.{name} must be {expected}, got {getattr(self, name)!r}")
        if isinstance(self.encoder_config, PreTrainedConfig):
            check_encoder_family(self.encoder_config.model_type)
        elif self.encoder_config is not None:
            check_encoder_config(self.encoder_config)
        super().__post_init__(**kwargs)
        self.scot_version = SCOT_VERSION

    @property
    def embed_dim(self) -> int:
        """Dimension of the encoder's joint embedding space."""
        encoder = self.encoder_config
        for name in ("projection_dim", "image_text_hidden_size", "hidden_size"):
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


__all__ = [
    "ENCODER_FAMILIES",
    "IMAGE_POOLINGS",
    "SCOT_VERSION",
    "ScotConfig",
    "check_encoder_config",
    "check_encoder_family",
    "one_line",
]
