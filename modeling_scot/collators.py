"""Data collators that turn triplet rows into [`ScotModel.forward`] inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .embedding_cache import NO_CAPTION, EmbeddingCache
from .processing_scot import ScotProcessor


def _pad_negatives(rows: Sequence[Sequence], max_negatives: int | None, pad) -> tuple[list[list], torch.Tensor]:
    """Pad each row's hard negatives to the same count K; returns the padded rows and a (B, K) mask."""
    width = max((len(row) for row in rows), default=0)
    if max_negatives is not None:
        width = min(width, max_negatives)
    padded = [list(row[:width]) + [pad] * (width - len(row[:width])) for row in rows]
    mask = torch.tensor([[i < len(row) for i in range(width)] for row in rows], dtype=torch.bool)
    return padded, mask.reshape(len(rows), width)


@dataclass
class ScotDataCollator:
    """Tokenises and preprocesses raw triplet rows (`image`, `modification`, `modified_caption`,
    optional `caption` and `hard_negatives`) so the model runs its frozen encoder on every batch.

    Slow but simple; prefer [`build_embedding_cache`] + [`CachedEmbeddingCollator`] for training.
    """

    processor: ScotProcessor
    max_negatives: int | None = None

    def _text(self, texts: list[str], prefix: str) -> dict[str, torch.Tensor]:
        tokens = self.processor(text=texts, return_tensors="pt")
        return {f"{prefix}input_ids": tokens["input_ids"], f"{prefix}attention_mask": tokens["attention_mask"]}

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = dict(
            self.processor(
                images=[f["image"] for f in features], text=[f["modification"] for f in features], return_tensors="pt"
            )
        )
        batch.update(self._text([f["modified_caption"] for f in features], "target_"))
        if all(f.get("caption") is not None for f in features):
            batch.update(self._text([f["caption"] for f in features], "caption_"))
        negatives, mask = _pad_negatives([f.get("hard_negatives") or [] for f in features], self.max_negatives, "")
        if mask.shape[1] > 0:
            flat = self._text([text for row in negatives for text in row], "negative_")
            batch.update({k: v.reshape(len(features), mask.shape[1], -1) for k, v in flat.items()})
            batch["negative_mask"] = mask
        return batch


@dataclass
class CachedEmbeddingCollator:
    """Gathers cached embeddings for rows of the index dataset made by [`build_embedding_cache`]."""

    cache: EmbeddingCache
    max_negatives: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        def take(table: torch.Tensor, column: str) -> torch.Tensor:
            return table[torch.tensor([f[column] for f in features], dtype=torch.long)]

        images, texts = self.cache.image_embeds, self.cache.text_embeds
        batch = {
            "image_embeds": take(images, "image_index"),
            "text_embeds": take(texts, "text_index"),
            "target_embeds": take(texts, "target_index"),
        }
        if all(f["caption_index"] != NO_CAPTION for f in features):
            batch["caption_embeds"] = take(texts, "caption_index")
        negatives, mask = _pad_negatives([f["negative_indices"] for f in features], self.max_negatives, 0)
        if mask.shape[1] > 0:
            batch["negative_embeds"] = texts[torch.tensor(negatives, dtype=torch.long)]
            batch["negative_mask"] = mask
        return batch


__all__ = ["CachedEmbeddingCollator", "ScotDataCollator"]
