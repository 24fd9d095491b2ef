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


def backend_options(cls: type[TripletBackend]) -> list[str]:
    """The keyword arguments a backend's constructor takes, following `**kwargs` up to its base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in parameters if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def get_backend(name: str, **options: object) -> TripletBackend:
    """A new backend `name` built with `options` (its constructor's keyword arguments)."""
    cls = backend_class(name)
    accepted = backend_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"backend {name!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted)}")
    return cls(**options)


__all__ = ["BACKEND_NAMES", "backend_class", "backend_options", "get_backend"]
