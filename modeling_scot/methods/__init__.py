"""Composed-query methods run side by side on one harness: SCOT, LinCIR, ISA and the training-free baselines (Slerp
also on a Text-Anchored-Tuned image tower, `tat_model`)."""

from .baselines import embedding_sum, image_only, slerp, text_only
from .registry import (
    DEFAULT_METHOD_NAMES,
    METHOD_NAMES,
    METHODS,
    SLERP_PAPER_ALPHAS,
    CIRMethod,
    EmbeddingSum,
    ImageOnly,
    Isa,
    Lincir,
    ScotMethod,
    Slerp,
    TextOnly,
    build_method,
)

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
    "embedding_sum",
    "image_only",
    "slerp",
    "text_only",
]
