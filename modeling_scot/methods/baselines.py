"""Training-free composed-query baselines on frozen image and text embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def image_only(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """The reference image embedding alone (ignores the modification)."""
    return F.normalize(image_embeds, dim=-1)


def text_only(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """The modification text embedding alone (ignores the reference image)."""
    return F.normalize(text_embeds, dim=-1)


def embedding_sum(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """The normalised sum of the normalised image and text embeddings."""
    return F.normalize(F.normalize(image_embeds, dim=-1) + F.normalize(text_embeds, dim=-1), dim=-1)


PARALLEL_SINE = 1e-4
"""Below this sine of the angle between the image and text embeddings, Slerp falls back to normalised linear
interpolation (its spherical weights divide by the sine)."""


def slerp(image_embeds: torch.Tensor, text_embeds: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Spherical linear interpolation from the image (alpha=0) to the text embedding (alpha=1); nearly parallel
    (or opposite) pairs, whose angle leaves no stable spherical weights, interpolate linearly."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"slerp alpha must be in [0, 1], got {alpha}")
    v, t = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    angle = torch.acos((v * t).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(angle)
    parallel = sin < PARALLEL_SINE
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - alpha) * angle) * v + torch.sin(alpha * angle) * t) / safe_sin
    linear = (1 - alpha) * v + alpha * t
    return F.normalize(torch.where(parallel, linear, spherical), dim=-1)


__all__ = ["embedding_sum", "image_only", "slerp", "text_only"]
