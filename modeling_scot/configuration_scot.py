"""Configuration of a SCOT model: a frozen dual encoder (CLIP, SigLIP, ...) plus a trainable Combiner."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

SCOT_VERSION = "0.1.0"


class ScotConfig(PreTrainedConfig):
    r"""Configuration of [`ScotModel`].

    Args:
        clip_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the frozen dual encoder. Any transformers model type whose model has
            `get_image_features` / `get_text_features` works (`clip`, `siglip`, `siglip2`, ...);
            a dict without `model_type` is read as a CLIP config.
        clip_name_or_path (`str`, *optional*):
            Hub id or folder the dual encoder was loaded from. Required for `combiner_only` saves,
            whose weights file holds the Combiner alone and which reload the encoder from here.
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
        region_grid (`int`):
            0: the Combiner composes V and T_m alone. G > 0: the reference image is also embedded once per
            cell of a G x G grid (all else filled with its border colour), and the Combiner adds a gated
            linear map of one region, the edit's referent, to T_m. In training the referent is the occupied
            region closest to T_c - T_u (what the caption loses); at retrieval every occupied region is a
            hypothesis, and a gallery image scores the soft maximum of its scores under them.
        region_temperature (`float`):
            Temperature of that soft maximum over referent hypotheses.
        scot_version (`str`):
            Version of `modeling_scot` that wrote this config.
    """

    model_type = "scot"
    keys_to_ignore_at_inference = [
        "modality_weight", "image_embeds", "text_embeds", "negative_embeds", "caption_embeds", "region_embeds",
        "hypothesis_embeds",
    ]
    sub_configs_defaults = {"clip_config": SubConfigSpec(config_class=AutoConfig, model_type="clip")}

    clip_config: dict | PreTrainedConfig | None = None
    clip_name_or_path: str | None = None
    combiner_only: bool = False
    combiner_projection_dim: int | None = None
    combiner_hidden_dim: int | None = None
    combiner_dropout: float = 0.1
    temperature: float = 0.05
    learnable_temperature: bool = False
    max_logit_scale: float = 100.0
    hard_negative_weight: float = 1.0
    caption_negative_weight: float = 1.0
    region_grid: int = 0
    region_temperature: float = 0.01
    scot_version: str = SCOT_VERSION

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("temperature", "region_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ScotConfig.{name} must be > 0, got {getattr(self, name)}")
        if not isinstance(self.region_grid, int) or self.region_grid < 0:
            raise ValueError(f"ScotConfig.region_grid must be an int >= 0, got {self.region_grid!r}")
        for name in ("hard_negative_weight", "caption_negative_weight", "combiner_dropout"):
            if getattr(self, name) < 0:
                raise ValueError(f"ScotConfig.{name} must be >= 0, got {getattr(self, name)}")
        self.scot_version = SCOT_VERSION

    @property
    def embed_dim(self) -> int:
        """Dimension of the encoder's joint embedding space."""
        encoder = self.clip_config
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


__all__ = ["ScotConfig", "SCOT_VERSION"]
