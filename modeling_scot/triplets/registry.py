"""Triplet backends by name: `rules`, `transformers` and `openai`."""

from __future__ import annotations

import importlib
import inspect

from .backend import TripletBackend

_BACKENDS: dict[str, tuple[str, str]] = {
    "rules": ("modeling_scot.triplets.rules", "RulesBackend"),
    "transformers": ("modeling_scot.triplets.transformers_backend", "TransformersBackend"),
    "openai": ("modeling_scot.triplets.openai_backend", "OpenAIBackend"),
}
BACKEND_NAMES: tuple[str, ...] = tuple(_BACKENDS)


def backend_class(name: str) -> type[TripletBackend]:
    """The backend class registered as `name` (imported on first use)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown triplet backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    module, attribute = _BACKENDS[name]
    return getattr(importlib.import_module(module), attribute)


def get_backend(name: str, **options: object) -> TripletBackend:
    """A new backend `name` built with `options` (its constructor's keyword arguments)."""
    cls = backend_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"backend {name!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted)}")
    return cls(**options)


__all__ = ["BACKEND_NAMES", "backend_class", "get_backend"]
