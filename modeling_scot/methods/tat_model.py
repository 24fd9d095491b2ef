"""Text-Anchored Tuning (TAT; Jang et al., ECCV 2024, "Spherical Linear Interpolation and Text-Anchoring for
Zero-shot Composed Image Retrieval"): LoRA adapters on the image tower of a dual encoder, trained so that its image
embeddings meet the frozen text tower's caption embeddings (see `tat_training`).

The text tower never changes, so the tuned encoder's text embeddings are the base encoder's, bit for bit. A saved
TAT folder is peft's adapter folder (`adapter_config.json`, `adapter_model.safetensors`; it names the base encoder
and copies none of its weights), `tat_config.json` (the settings and a signature of the base) and the base's
processor files. [`load_tat_encoder`] merges the adapters into a plain dual encoder that `ScotModel.from_encoder`
takes like any other, so Slerp (or SCOT) runs on the tuned image tower for queries and gallery alike.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError
from transformers import PreTrainedModel

from ..configuration_scot import one_line
from ..encoders import adapter_for
from ..io_utils import replace_folder_atomic, write_json
from ..modeling_scot import ScotModel, load_dual_encoder
from .saved_config import SavedConfig

CONFIG_NAME = "tat_config.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
VISION_ATTENTION_MODULES = (
    r"vision_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj|qkv|projection)"
)
"""The attention projections of every transformer layer of the image tower: q/k/v/out in CLIP, SigLIP and SigLIP 2
alike (not SigLIP's attention-pooling head, whose `nn.MultiheadAttention` LoRA cannot wrap), the fused qkv and the
output projection in BLIP-2's vision model (its Q-Former is left as it is)."""
PROBE_ROWS = 8
CROSS_DTYPE_TOLERANCE = 1e-2
"""Absolute tolerance on the weight probes of a base loaded in another dtype (bf16, fp16) than the one trained on."""
SAME_DTYPE_TOLERANCE = 1e-9
"""Relative tolerance in the same dtype: the same weights give the same float64 sums."""


@dataclass
class TatConfig(SavedConfig):
    """TAT's LoRA and loss settings (the paper's by default) and the base encoder they belong to."""

    model_type: ClassVar[str] = "tat"
    label: ClassVar[str] = "a TAT"

    rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input during training."})
    target_modules: str = field(
        default=VISION_ATTENTION_MODULES,
        metadata={"help": "Regular expression that must match the whole name of every adapted module."},
    )
    temperature: float = field(default=0.07, metadata={"help": "Softmax temperature of the image-caption loss."})
    base_name_or_path: str | None = field(default=None, metadata={"help": "Hub id or folder of the base encoder."})
    base_signature: dict = field(default_factory=dict, metadata={"help": "What identifies the base encoder."})

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"TatConfig.rank must be a positive integer, got {self.rank!r}")
        for name, low, high in (("alpha", 0.0, math.inf), ("dropout", 0.0, 1.0), ("temperature", 1e-6, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ValueError(f"TatConfig.{name} must be a number in [{low}, {high}), got {value!r}")
        try:
            re.compile(self.target_modules)
        except (TypeError, re.error) as err:
            raise ValueError(f"TatConfig.target_modules must be a regular expression, got {self.target_modules!r}: "
                             f"{err}") from None
        if not isinstance(self.base_name_or_path, (str, type(None))) or not isinstance(self.base_signature, dict):
            raise ValueError("TatConfig.base_name_or_path must be a string or null, base_signature an object")

    def for_base(self, encoder: PreTrainedModel, name_or_path: str | None) -> TatConfig:
        """This config naming `encoder` (loaded from `name_or_path`) as its base, with its signature."""
        signature = base_signature(encoder, self.target_modules)
        return replace(self, base_name_or_path=name_or_path, base_signature=signature)

    def lora_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=self.target_modules
        )


def _probe(tensor: torch.Tensor) -> list[float]:
    """The float64 sum and alternating-sign sum of the first rows of a weight."""
    rows = tensor.detach()[:PROBE_ROWS].to("cpu", torch.float64).reshape(min(PROBE_ROWS, len(tensor)), -1)
    signs = torch.ones(rows.shape[1], dtype=torch.float64)
    signs[1::2] = -1
    return [float(rows.sum()), float((rows @ signs).sum())]


def base_signature(encoder: PreTrainedModel, target_modules: str = VISION_ATTENTION_MODULES) -> dict:
    """What identifies a base encoder: family, tower sizes, dtype, and probes of its text token table and of the
    first and last weights the adapters target."""
    if isinstance(encoder, PeftModel):
        raise ValueError("the base encoder must be a plain dual encoder, not a PeftModel")
    adapter = adapter_for(encoder, "the base encoder")
    pattern = re.compile(target_modules)
    targets = [
        module.weight
        for name, module in encoder.named_modules()
        if pattern.fullmatch(name) and isinstance(getattr(module, "weight", None), torch.Tensor)
    ]
    if not targets:
        raise ValueError(f"TatConfig.target_modules {target_modules!r} matches no module of the {adapter.family} "
                         "encoder")
    config = encoder.config
    return {
        "model_type": config.model_type,
        "vision_size": [config.vision_config.hidden_size, config.vision_config.num_hidden_layers],
        "text_size": [config.text_config.hidden_size, config.text_config.num_hidden_layers],
        "dtype": str(targets[0].dtype).removeprefix("torch."),
        "probes": [_probe(adapter.token_embedding.weight), _probe(targets[0]), _probe(targets[-1])],
    }


def signature_mismatch(saved: dict, given: dict) -> str | None:
    """Which part of two base signatures differs, or None when they match."""
    for key in ("model_type", "vision_size", "text_size"):
        if saved.get(key) != given.get(key):
            return f"{key} {saved.get(key)!r} != {given.get(key)!r}"
    same_dtype = saved.get("dtype") == given.get("dtype")
    try:
        saved_probes, given_probes = (torch.tensor(s.get("probes"), dtype=torch.float64) for s in (saved, given))
        close = saved_probes.shape == given_probes.shape and torch.allclose(
            saved_probes,
            given_probes,
            rtol=SAME_DTYPE_TOLERANCE if same_dtype else 0.0,
            atol=0.0 if same_dtype else CROSS_DTYPE_TOLERANCE,
        )
    except (TypeError, ValueError, RuntimeError):  # probes that are not lists of numbers
        close = False
    return None if close else "their weights differ"


def add_tat_adapters(encoder: PreTrainedModel, config: TatConfig) -> PeftModel:
    """`encoder` (changed in place) with fresh LoRA adapters on the modules `config.target_modules` names; only the
    adapters train. Refuses a pattern that matches nothing or any module outside the image tower."""
    adapter = adapter_for(encoder, "the base encoder")
    base_signature(encoder, config.target_modules)  # refuses a pattern that matches nothing
    try:
        model = get_peft_model(encoder, config.lora_config())
    except ValueError as err:  # peft's refusal of a module type it cannot wrap
        raise ValueError(f"TatConfig.target_modules {config.target_modules!r}: {one_line(err)}") from None
    vision_modules = {id(module) for module in adapter.vision_tower.modules()}
    outside = [name for name, module in model.named_modules()
               if isinstance(module, LoraLayer) and id(module) not in vision_modules]  # fmt: skip
    if outside:
        model.unload()
        raise ValueError(f"TatConfig.target_modules {config.target_modules!r} matches modules outside the image "
                         f"tower of the {adapter.family} encoder: {outside[:3]}; TAT tunes the image tower only")
    return model


def check_tat_output(folder: Path) -> None:
    """Refuse to replace `folder` unless it is absent or a saved model of this method."""
    TatConfig.check_output(folder, CONFIG_NAME)


def save_tat_adapters(model: PeftModel, config: TatConfig, folder: str | os.PathLike, processor=None) -> None:
    """Write `model`'s adapters with peft's `save_pretrained`, `config` and the base's `processor` to `folder`,
    replaced as a whole (a folder that is not a saved TAT model is refused)."""
    folder = Path(folder)
    check_tat_output(folder)
    with replace_folder_atomic(folder) as staging:
        model.save_pretrained(staging)
        write_json(staging / CONFIG_NAME, config.to_dict())
        if processor is not None:
            processor.save_pretrained(staging)


def load_tat_model(
    folder: str | os.PathLike,
    base: PreTrainedModel | str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> PeftModel:
    """The adapters saved at `folder` around `base` (default: the base its config names; a given model is changed
    in place), frozen and in eval mode. Refuses a base other than the one the adapters were trained on."""
    folder = Path(folder)
    for path in (folder, folder / CONFIG_NAME, folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME):
        if not path.exists():
            raise FileNotFoundError(f"TAT model {str(folder)!r}: {str(path)!r} does not exist")
    config = TatConfig.from_file(folder / CONFIG_NAME)
    if base is None:
        if not config.base_name_or_path:
            raise ValueError(f"{folder / CONFIG_NAME} names no base encoder (base_name_or_path): pass base=...")
        base = config.base_name_or_path
    if isinstance(base, (str, os.PathLike)):
        base = load_dual_encoder(base, **({"dtype": dtype} if dtype is not None else {}))
    elif not isinstance(base, PreTrainedModel):
        raise ValueError(f"base must be a dual encoder, a Hub id or a folder, got {type(base).__name__}")
    try:
        problem = signature_mismatch(config.base_signature, base_signature(base, config.target_modules))
    except ValueError as err:  # a base of another family or layout
        problem = str(err)
    if problem is not None:
        raise ValueError(
            f"{folder}: the adapters were trained on the base encoder {config.base_name_or_path!r}, but the given "
            f"base {base.config.name_or_path or type(base).__name__!r} is a different encoder ({problem})"
        )
    try:
        model = PeftModel.from_pretrained(base, str(folder))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"{folder}: its adapters cannot be loaded: {one_line(err)}") from None
    return model.eval()


def load_tat_encoder(
    folder: str | os.PathLike,
    base: PreTrainedModel | str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """The tuned dual encoder: the adapters saved at `folder` merged into `base` (see [`load_tat_model`]).

    The result is a plain model of the base's class whose `name_or_path` is `folder` (its processor files are
    there): `ScotModel.from_encoder(load_tat_encoder(folder))` runs Slerp or SCOT on the tuned image tower.
    """
    merged = load_tat_model(folder, base, dtype=dtype).merge_and_unload()
    merged.config.name_or_path = merged.name_or_path = os.fspath(folder)
    return merged.eval()


def with_tuned_image_tower(model: ScotModel, folder: str | os.PathLike) -> ScotModel:
    """`model` with the TAT adapters saved at `folder` merged into its encoder's image tower, in place: its
    Combiner and text tower stay as they are, and every image embedding (queries and gallery) comes from the tuned
    tower. Refuses adapters trained on another encoder, naming both."""
    merged = load_tat_encoder(folder, model.encoder).requires_grad_(False)
    model.encoder, model.encoder_adapter = merged, adapter_for(merged, f"the TAT encoder {os.fspath(folder)!r}")
    return model


__all__ = [
    "VISION_ATTENTION_MODULES",
    "TatConfig",
    "add_tat_adapters",
    "base_signature",
    "check_tat_output",
    "load_tat_encoder",
    "load_tat_model",
    "save_tat_adapters",
    "signature_mismatch",
    "with_tuned_image_tower",
]
