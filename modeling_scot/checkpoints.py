"""Trainer checkpoints without pickle, and the choice of the checkpoint to resume from.

transformers' Trainer writes the optimizer, scheduler, RNG and gradient-scaler states with `torch.save` and reads
them back with `torch.load`. The state functions here write the same states as safetensors (tensors) plus JSON
(everything else), so that resuming reads nothing but safetensors and JSON. A checkpoint counts as complete when
its `trainer_state.json` (the Trainer writes it last) parses and its model weights have a readable header.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .io_utils import write_json

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
MODEL_WEIGHTS = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
SCHEDULER_JSON = "scheduler.json"
SCALER_JSON = "scaler.json"
PICKLED_STATES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def _save_tensors_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file` through a temporary file in the same folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint file {path} cannot be read as JSON: {error}") from error


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types on corrupt files.
        raise ValueError(f"checkpoint file {path} is not a readable safetensors file: {error}") from error


def _refuse_pickled(checkpoint: Path, names: tuple[str, ...]) -> None:
    pickled = [name for name in names if (checkpoint / name).exists()]
    if pickled:
        raise ValueError(
            f"checkpoint {checkpoint} holds {', '.join(pickled)} (pickle files), which modeling_scot never loads; "
            "resume from a checkpoint written by modeling_scot >= 0.2.0, or train without --resume"
        )


def save_optimizer_state(state: dict, folder: Path) -> None:
    """Write an optimizer `state_dict()`: per-parameter tensors as safetensors, the rest as JSON."""
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}/{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    _save_tensors_atomic(tensors, folder / OPTIMIZER_TENSORS)
    write_json(folder / OPTIMIZER_JSON, {"param_groups": state["param_groups"], "scalars": scalars})


def load_optimizer_state(folder: Path) -> dict | None:
    """The optimizer state written by `save_optimizer_state`, or None when the checkpoint has none."""
    if not (folder / OPTIMIZER_JSON).is_file():
        _refuse_pickled(folder, ("optimizer.pt",))
        return None
    meta = _read_json(folder / OPTIMIZER_JSON)
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list):
        raise ValueError(f"checkpoint file {folder / OPTIMIZER_JSON} has no 'param_groups' list")
    state: dict[int, dict] = {}
    for key, tensor in _read_tensors(folder / OPTIMIZER_TENSORS).items():
        param_id, _, name = key.partition("/")
        state.setdefault(int(param_id), {})[name] = tensor
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_json_state(state: dict, path: Path) -> None:
    """Write a scheduler or scaler `state_dict()` (plain numbers and lists) as JSON."""
    try:
        write_json(path, state)
    except TypeError as error:
        raise ValueError(f"{path.name}: this state cannot be saved without pickle: {error}") from error


def load_json_state(path: Path) -> dict | None:
    """A state written by `save_json_state`, or None when the checkpoint has none."""
    if not path.is_file():
        _refuse_pickled(path.parent, (path.with_suffix(".pt").name,))
        return None
    state = _read_json(path)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint file {path} must hold a JSON object, got {type(state).__name__}")
    return state


def rng_state_name(process_index: int, world_size: int) -> str:
    return "rng_state.safetensors" if world_size <= 1 else f"rng_state_{process_index}.safetensors"


def save_rng_state(path: Path) -> None:
    """Write the Python, NumPy, torch CPU and CUDA generator states."""
    version, python_state, gauss = random.getstate()
    kind, numpy_keys, numpy_pos, has_gauss, cached_gaussian = np.random.get_state()
    tensors = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "cpu": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        tensors.update({f"cuda/{i}": s for i, s in enumerate(torch.cuda.random.get_rng_state_all())})
    meta = {"python_version": version, "python_gauss": gauss, "numpy_kind": kind, "numpy_pos": numpy_pos,
            "numpy_has_gauss": has_gauss, "numpy_cached_gaussian": cached_gaussian}
    _save_tensors_atomic(tensors, path, metadata={"rng": json.dumps(meta)})


def load_rng_state(path: Path) -> bool:
    """Restore the generator states written by `save_rng_state`; False when the file is absent."""
    if not path.is_file():
        _refuse_pickled(path.parent, ("rng_state.pth",))
        return False
    tensors = _read_tensors(path)
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("rng", "{}"))
    try:
        random.setstate((meta["python_version"], tuple(tensors["python"].tolist()), meta["python_gauss"]))
        np.random.set_state((meta["numpy_kind"], tensors["numpy"].numpy().astype(np.uint32), meta["numpy_pos"],
                             meta["numpy_has_gauss"], meta["numpy_cached_gaussian"]))
        torch.random.set_rng_state(tensors["cpu"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"checkpoint file {path} does not hold valid generator states: {error}") from error
    cuda_states = [tensors[f"cuda/{i}"] for i in range(len(tensors)) if f"cuda/{i}" in tensors]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.random.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return True


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from (half-written), or None when it is complete."""
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{TRAINER_STATE} is missing or unreadable ({error.__class__.__name__})"
    try:
        with safe_open(str(folder / MODEL_WEIGHTS), framework="pt"):
            pass
    except Exception as error:  # safetensors raises its own error types on corrupt files.
        return f"{MODEL_WEIGHTS} is missing or unreadable ({error})"
    return None


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The highest-numbered complete `checkpoint-N` in `folder`; half-written ones are skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered = [(int(m.group(1)), path) for path in folder.iterdir() if (m := _CHECKPOINT_NAME.match(path.name))]
    for _, path in sorted(numbered, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        logger.warning("skipping half-written checkpoint %s: %s", path, problem)
    return None


__all__ = [
    "PICKLED_STATES",
    "SCALER_JSON",
    "SCHEDULER_JSON",
    "checkpoint_problem",
    "last_complete_checkpoint",
    "load_json_state",
    "load_optimizer_state",
    "load_rng_state",
    "rng_state_name",
    "save_json_state",
    "save_optimizer_state",
    "save_rng_state",
]
