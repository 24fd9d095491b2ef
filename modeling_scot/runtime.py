"""Device and dtype choices, and loading a saved model onto them, shared by the command line, the demo and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import PartialState

from .methods.tat_model import with_tuned_image_tower
from .modeling_scot import ScotModel

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU (under `accelerate launch` with several processes: this process's
    device); other names are checked for availability."""
    if name == "auto":
        state = PartialState()
        if state.num_processes > 1:
            return state.device
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a torch device: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: CUDA is not available on this machine")
    return device


def cpu_runs_bf16_fast() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), on which bf16 matrix products run several
    times faster than fp32 ones."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(probe is not None and probe() for probe in probes)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Weights dtype: `auto` is bf16 on CUDA devices that support it and on CPUs with bf16 matrix instructions
    (`cpu_runs_bf16_fast`), fp32 elsewhere."""
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r} is not one of {sorted(DTYPES)}")
    if DTYPES[name] is not None:
        return DTYPES[name]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_runs_bf16_fast():
        return torch.bfloat16
    return torch.float32


@dataclass
class RuntimeArguments:
    """Where a command runs its model."""

    device: str = field(default="auto", metadata={"help": "torch device: auto (CUDA, then MPS, then CPU), cpu, cuda:0, ..."})
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = field(
        default="auto", metadata={"help": "encoder dtype (auto: bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere)"}
    )


def load_model(
    source: str,
    device_name: str = "auto",
    dtype_name: str = "auto",
    image_tower: str | None = None,
    compile_encoders: bool = False,
) -> ScotModel:
    """A saved SCOT model (Hub id or folder) on the named device and dtype, in eval mode; with `image_tower` (a
    folder written by `train_tat`), its image tower Text-Anchored-Tuned; with `compile_encoders`, both towers
    `torch.compile`d (`ScotModel.compile_encoders`)."""
    looks_local = Path(source).is_absolute() or source.startswith(".") or source.count("/") > 1
    if looks_local and not Path(source).exists():
        raise FileNotFoundError(f"--model {source!r} does not exist (a Hub id is 'name' or 'org/name')")
    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    model = ScotModel.from_pretrained(source, dtype=dtype)
    if image_tower is not None:
        if not Path(image_tower).is_dir():
            raise FileNotFoundError(f"--image-tower {image_tower!r} is not a folder (one written by train_tat)")
        model = with_tuned_image_tower(model, image_tower)
    model = model.to(device).eval()
    return model.compile_encoders() if compile_encoders else model


__all__ = ["DTYPES", "RuntimeArguments", "load_model", "resolve_device", "resolve_dtype"]
