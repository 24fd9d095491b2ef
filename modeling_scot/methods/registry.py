"""The method registry: every composed-query method of the harness, by name, with its own settings.

A method turns reference-image and modification-text embeddings into gallery scores. Its settings are
fields of the method object (Slerp's `alpha`); `for_benchmark` gives the values the method's paper uses on a
benchmark, `search_space` the values a validation split may choose from, and `settings()` what ran, for
every report. A method trained apart from SCOT's Combiner (LinCIR's phi) names its saved folder in a setting
(`artefact`); one that composes from the modification texts themselves, not only their embeddings, sets
`needs_texts`, and one that reads the reference images with its own encoder (ISA) sets `needs_images`.
`scot eval`, the quickstart, `scot search` and the demo all build methods here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import ClassVar

import torch

from ..similarity import image_scores
from .baselines import embedding_sum, image_only, slerp, text_only
from .isa_model import IsaModel
from .lincir_model import LincirModel


@dataclass(frozen=True)
class CIRMethod:
    """A composed-query method; subclasses set `name`, `description` and `queries`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_text: ClassVar[bool] = True
    needs_texts: ClassVar[bool] = False
    """Whether `queries` needs the modification texts themselves (`texts`), not only their embeddings."""
    needs_images: ClassVar[bool] = False
    """Whether `queries` needs the reference images themselves (`images`); it then ignores `image_embeds`."""
    artefact: ClassVar[str | None] = None
    """The setting that names the method's own trained folder (None: the method needs none)."""
    search_space: ClassVar[Mapping[str, Sequence]] = {}
    """Setting name -> the values a validation split may choose from (empty: nothing to tune)."""

    @classmethod
    def for_benchmark(cls, benchmark: str | None) -> CIRMethod:
        """The method with the settings its paper uses on `benchmark` (None: the general defaults)."""
        return cls()

    def settings(self) -> dict:
        """The settings this method runs with (recorded in every report)."""
        return asdict(self)

    def load(self, model) -> None:
        """Load what the method needs around `model` beyond its settings (a trained folder), so that a folder
        that does not fit fails here, not at the first query."""

    def with_settings(self, **settings) -> CIRMethod:
        """A copy with some settings replaced; unknown names fail with a clear error."""
        known = {field.name for field in fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"method {self.name!r} has no setting(s) {unknown}; it has {sorted(known) or 'none'}")
        return replace(self, **settings)

    def queries(
        self,
        model,
        image_embeds: torch.Tensor | None,
        text_embeds: torch.Tensor | None,
        texts: Sequence[str] | None = None,
        images: Sequence | None = None,
    ) -> torch.Tensor:
        """(N, D) L2-normalised query embeddings from (N, D) reference-image and modification-text embeddings
        (and, for a method that `needs_texts` or `needs_images`, the N modification texts or reference images)."""
        raise NotImplementedError

    def score(
        self,
        model,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        gallery_embeds: torch.Tensor,
        texts: Sequence[str] | None = None,
        images: Sequence | None = None,
    ) -> torch.Tensor:
        """(N, G) scores of the queries against (G, D) gallery embeddings (cosine similarity), or (G, K, D)
        multi-vector ones (each image's best vector: `image_scores`)."""
        queries = self.queries(model, image_embeds, text_embeds, texts, images)
        return image_scores(queries.float(), gallery_embeds.to(queries.device).float())


@dataclass(frozen=True)
class ScotMethod(CIRMethod):
    """SCOT: the model's trained Combiner on the frozen embeddings."""

    name: ClassVar[str] = "scot"
    description: ClassVar[str] = "SCOT (learned Combiner)"
    compose_batch_size: ClassVar[int] = 4096

    @torch.no_grad()
    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        model.eval()
        device, step = model.device, self.compose_batch_size
        parts = [
            model.compose(image_embeds[i : i + step].to(device), text_embeds[i : i + step].to(device))
            .query_embeds.float()
            .cpu()
            for i in range(0, len(image_embeds), step)
        ]
        return torch.cat(parts) if parts else torch.empty(0, image_embeds.shape[-1])


@dataclass(frozen=True)
class ImageOnly(CIRMethod):
    name: ClassVar[str] = "image"
    description: ClassVar[str] = "image only"
    uses_text: ClassVar[bool] = False

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        return image_only(image_embeds, text_embeds)


@dataclass(frozen=True)
class TextOnly(CIRMethod):
    name: ClassVar[str] = "text"
    description: ClassVar[str] = "text only"

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        return text_only(image_embeds, text_embeds)


@dataclass(frozen=True)
class EmbeddingSum(CIRMethod):
    name: ClassVar[str] = "sum"
    description: ClassVar[str] = "sum"

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        return embedding_sum(image_embeds, text_embeds)


SLERP_PAPER_ALPHAS = {"cirr": 0.9, "fashioniq": 0.8, "circo": 0.8}
"""Slerp's text weight in its paper (Jang et al., ECCV 2024) per benchmark."""
SLERP_DEFAULT_ALPHA = 0.8


@dataclass(frozen=True)
class Slerp(CIRMethod):
    """Spherical interpolation from the image (alpha 0) to the text embedding (alpha 1)."""

    name: ClassVar[str] = "slerp"
    description: ClassVar[str] = "Slerp"
    search_space: ClassVar[Mapping[str, Sequence]] = {"alpha": tuple(round(0.1 * i, 1) for i in range(1, 10))}
    alpha: float = SLERP_DEFAULT_ALPHA

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"slerp alpha must be in [0, 1], got {self.alpha}")

    @classmethod
    def for_benchmark(cls, benchmark: str | None) -> Slerp:
        return cls(alpha=SLERP_PAPER_ALPHAS.get(benchmark, SLERP_DEFAULT_ALPHA))

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        return slerp(image_embeds, text_embeds, self.alpha)


@lru_cache(maxsize=4)
def _trained_part(model_class: type, folder: str, encoder):
    """The trained part (`LincirModel`, `IsaModel`) saved at `folder` around `encoder`, loaded once per triple."""
    return model_class.from_pretrained(folder, encoder)


@dataclass(frozen=True)
class Lincir(CIRMethod):
    """LinCIR: phi maps the reference image embedding to the token of "a photo of $ that {modification}", which
    the frozen text tower encodes; `model_path` is phi's folder (written by `train_lincir`)."""

    name: ClassVar[str] = "lincir"
    description: ClassVar[str] = "LinCIR (language-only trained phi)"
    needs_texts: ClassVar[bool] = True
    artefact: ClassVar[str | None] = "model_path"
    model_path: str | None = None

    def load(self, model) -> LincirModel:
        if self.model_path is None:
            raise ValueError(
                "method 'lincir' needs a trained phi: pass its folder (scot eval/search/demo --lincir DIR)"
            )
        return _trained_part(LincirModel, os.path.realpath(self.model_path), model)

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        phi = self.load(model)
        if texts is None:
            raise ValueError("method 'lincir' composes from the modification texts: pass texts=")
        return phi.compose(image_embeds, list(texts))


@dataclass(frozen=True)
class Isa(CIRMethod):
    """ISA: a light query-side image encoder turns the reference image into pseudo-word tokens of "a photo of $ that
    {modification}", which the frozen text tower encodes; the gallery stays the large image tower's. `model_path` is
    the query encoder's folder (written by `train_isa`)."""

    name: ClassVar[str] = "isa"
    description: ClassVar[str] = "ISA (light query-side image encoder)"
    needs_texts: ClassVar[bool] = True
    needs_images: ClassVar[bool] = True
    artefact: ClassVar[str | None] = "model_path"
    model_path: str | None = None

    def load(self, model) -> IsaModel:
        if self.model_path is None:
            raise ValueError(
                "method 'isa' needs a trained query encoder: pass its folder (scot eval/search/demo --isa DIR)"
            )
        return _trained_part(IsaModel, os.path.realpath(self.model_path), model)

    def queries(self, model, image_embeds, text_embeds, texts=None, images=None):
        query_encoder = self.load(model)
        if texts is None or images is None:
            raise ValueError("method 'isa' composes from the reference images and modification texts: pass both")
        return query_encoder.compose(list(images), list(texts))


METHODS: dict[str, type[CIRMethod]] = {
    method.name: method for method in (ScotMethod, ImageOnly, TextOnly, EmbeddingSum, Slerp, Lincir, Isa)
}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
DEFAULT_METHOD_NAMES: tuple[str, ...] = tuple(name for name, method in METHODS.items() if method.artefact is None)
"""The methods that run with a SCOT model alone (the default of `scot eval`)."""


def build_method(name: str, benchmark: str | None = None, **settings) -> CIRMethod:
    """The method `name` with the settings for `benchmark`, then `settings` on top."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {list(METHOD_NAMES)}")
    method = METHODS[name].for_benchmark(benchmark)
    return method.with_settings(**settings) if settings else method


__all__ = [
    "CIRMethod",
    "DEFAULT_METHOD_NAMES",
    "EmbeddingSum",
    "ImageOnly",
    "Isa",
    "Lincir",
    "METHODS",
    "METHOD_NAMES",
    "SLERP_PAPER_ALPHAS",
    "ScotMethod",
    "Slerp",
    "TextOnly",
    "build_method",
]
