"""The frozen encoder a trained part (LinCIR's phi, ISA's query encoder) belongs to: its signature, and loading a
saved part only around the encoder it was trained with."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..checkpoints import _save_tensors_atomic
from ..encoding import encode_texts
from ..io_utils import write_json
from ..modeling_scot import ScotModel

MODIFICATION = "{modification}"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PROBE_ROWS = 8
PROBE_TOLERANCE = 1e-2
"""Absolute tolerance on the token-table probe: the same encoder loaded in bf16 or fp16 still matches."""
PROBE_TEXT = "a photo of a small red circle to the left of a dog on green grass"
MIN_PROBE_COSINE = 0.999
"""Least cosine between the saved and the given encoder's embeddings of the probe image and text. The shipped
world CLIP loaded in bf16 gives 0.99999; its image tower after two epochs of Text-Anchored Tuning gives 0.9975."""


def encoder_sizes(encoder: ScotModel) -> dict:
    """Family, embedding and token sizes of a frozen encoder, and sums of the first rows of its token table."""
    table = encoder.encoder_adapter.token_embedding.weight.detach()
    rows = table[:PROBE_ROWS].float().cpu()
    signs = torch.ones(rows.shape[1])
    signs[1::2] = -1
    probe = torch.cat([rows.sum(dim=1), rows @ signs])
    return {
        "model_type": encoder.encoder.config.model_type,
        "embed_dim": encoder.config.embed_dim,
        "token_dim": table.shape[1],
        "vocab_size": table.shape[0],
        "token_table_probe": [round(value, 5) for value in probe.tolist()],
    }


def encoder_signature(encoder: ScotModel) -> dict:
    """What identifies a frozen encoder: its sizes (`encoder_sizes`) and its embeddings of a fixed probe image
    (the adapter's `probe_inputs`) and of the probe text, which any change to either tower moves."""
    adapter = encoder.encoder_adapter
    device = encoder.device
    with torch.inference_mode():
        image = adapter.image_embeds(**{name: value.to(device) for name, value in adapter.probe_inputs().items()})
        text = encode_texts(encoder, [PROBE_TEXT], batch_size=1, progress=False)
    embeddings = {"image_probe": image, "text_probe": text}
    return encoder_sizes(encoder) | {
        name: [round(value, 5) for value in values.float().reshape(-1).tolist()] for name, values in embeddings.items()
    }


def _cosine(saved: object, given: object) -> float | None:
    try:
        first, second = (torch.tensor(values, dtype=torch.float64) for values in (saved, given))
    except (TypeError, ValueError, RuntimeError):  # not lists of numbers
        return None
    if first.ndim != 1 or first.shape != second.shape or not first.norm() or not second.norm():
        return None
    return float(first @ second / (first.norm() * second.norm()))


def signature_mismatch(saved: dict, given: dict, towers: tuple[str, ...]) -> str | None:
    """Which part of two encoder signatures differs, or None when they match. The probe embeddings of `towers` are
    compared where the saved signature has them (folders written before they were recorded have none)."""
    for key in ("model_type", "embed_dim", "token_dim", "vocab_size"):
        if saved.get(key) != given.get(key):
            return f"{key} {saved.get(key)!r} != {given.get(key)!r}"
    probe, other = saved.get("token_table_probe", []), given.get("token_table_probe", [])
    try:
        saved_probe, given_probe = (torch.tensor(values, dtype=torch.float64) for values in (probe, other))
        close = saved_probe.shape == given_probe.shape and torch.allclose(
            saved_probe, given_probe, atol=PROBE_TOLERANCE, rtol=0
        )
    except (TypeError, ValueError, RuntimeError):  # a probe that is not a list of numbers
        close = False
    if not close:
        return "the token-embedding tables differ"
    for tower in towers:
        key = f"{tower}_probe"
        if key in saved:
            cosine = _cosine(saved[key], given.get(key))
            if cosine is None or cosine < MIN_PROBE_COSINE:
                shown = "cannot be compared" if cosine is None else f"have cosine {cosine:.4f}"
                return f"their {tower} towers differ: their embeddings of the probe {tower} {shown}"
    return None


def load_encoder(encoder: ScotModel | str | os.PathLike, dtype: torch.dtype | None = None) -> ScotModel:
    """A frozen encoder with its processor: the given ScotModel (its Combiner is unused), or loaded from a Hub id
    or folder."""
    if isinstance(encoder, ScotModel):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        return ScotModel.from_encoder(encoder, dtype=dtype)
    raise ValueError(f"encoder must be a ScotModel, a Hub id or a folder, got {type(encoder).__name__}")



def check_prompt_fields(config) -> None:
    """Raise a ValueError naming the field when a pseudo-token config's `placeholder`, `prompt_template` (the
    placeholder once, then `{modification}` once) or encoder fields (`encoder_name_or_path`, `encoder_signature`)
    are malformed."""
    name = type(config).__name__
    if not isinstance(config.placeholder, str) or not config.placeholder.strip():
        raise ValueError(f"{name}.placeholder must be a non-empty string, got {config.placeholder!r}")
    if not isinstance(config.encoder_name_or_path, (str, type(None))) or not isinstance(config.encoder_signature, dict):
        raise ValueError(f"{name}.encoder_name_or_path must be a string or null, encoder_signature an object")
    template, placeholder = config.prompt_template, config.placeholder
    if (
        not isinstance(template, str)
        or template.count(placeholder) != 1
        or template.count(MODIFICATION) != 1
        or template.index(placeholder) > template.index(MODIFICATION)
    ):
        raise ValueError(
            f"{name}.prompt_template must hold the placeholder {placeholder!r} once, then {MODIFICATION} once, "
            f"got {template!r}"
        )


def save_trained_part(folder: str | os.PathLike, config, part: nn.Module) -> None:
    """Write `config` as config.json and `part`'s weights as model.safetensors (the part only; the config names
    the encoder it belongs to)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors_atomic(part.state_dict(), folder / WEIGHTS_NAME, metadata={"format": "pt"})
    write_json(folder / CONFIG_NAME, config.to_dict())


def load_trained_part(
    folder: str | os.PathLike,
    config_class: type,
    part_class: type[nn.Module],
    encoder: ScotModel | str | os.PathLike | None,
    dtype: torch.dtype | None,
    what: str,
) -> tuple[object, ScotModel, nn.Module]:
    """The config, encoder and trained part (`part_class(config)`, in eval mode) saved at `folder`, around `encoder`
    (default: the encoder the config names). Refuses another encoder, naming both, and a weights file that is
    unreadable or holds other tensors, naming it; a missing file is a FileNotFoundError."""
    folder = Path(folder)
    for path in (folder, folder / CONFIG_NAME, folder / WEIGHTS_NAME):
        if not path.exists():
            what_model = f"{config_class.label.split()[-1]} model {str(folder)!r}"
            raise FileNotFoundError(f"{what_model}: {str(path)!r} does not exist")
    config = config_class.from_file(folder / CONFIG_NAME)
    if encoder is None:
        if not config.encoder_name_or_path:
            raise ValueError(f"{folder / CONFIG_NAME} names no encoder (encoder_name_or_path): pass encoder=...")
        encoder = config.encoder_name_or_path
    encoder = load_encoder(encoder, dtype)
    problem = signature_mismatch(config.encoder_signature, encoder_signature(encoder), config_class.encoder_towers)
    if problem is not None:
        raise ValueError(
            f"{folder}: {what} was trained with the encoder {config.encoder_name_or_path!r}, but the given encoder "
            f"{encoder.config.encoder_name_or_path!r} is a different one ({problem})"
        )
    try:
        state = load_file(str(folder / WEIGHTS_NAME))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {err}") from None
    part = part_class(config)
    expected = {name: tuple(value.shape) for name, value in part.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in state.items()}
    if found != expected:
        raise ValueError(f"{folder / WEIGHTS_NAME} holds tensors {found}, {what} needs {expected}")
    part.load_state_dict(state)
    return config, encoder, part.eval()


__all__ = [
    "CONFIG_NAME",
    "MODIFICATION",
    "WEIGHTS_NAME",
    "check_prompt_fields",
    "encoder_signature",
    "encoder_sizes",
    "load_encoder",
    "load_trained_part",
    "save_trained_part",
    "signature_mismatch",
]
