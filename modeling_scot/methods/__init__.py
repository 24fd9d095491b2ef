"""Composed-query methods run side by side on one harness: SCOT and the training-free baselines."""

from .baselines import embedding_sum, image_only, slerp, text_only
from .registry import (
    METHOD_NAMES,
    METHODS,
    SLERP_PAPER_ALPHAS,
    CIRMethod,
    EmbeddingSum,
    ImageOnly,
    ScotMethod,
    Slerp,
    TextOnly,
    build_method,
)

__all__ = [
    "CIRMethod",
    "EmbeddingSum",
    "ImageOnly",
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
