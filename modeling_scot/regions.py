"""Grid regions of a reference image: the candidate referents of a modification ("remove the circle").

Each cell of a G x G grid becomes one region image: the reference with everything outside that cell filled
with the image's border colour. A cell that holds nothing but that colour is empty. An empty region's
embedding is stored as a zero vector, so the occupancy of a cached region tensor is its rows' non-zero norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOREGROUND_TOLERANCE = 1e-3
"""How far (in processed pixel units) a pixel must be from the border colour for its cell to hold something."""


def grid_region_pixels(pixel_values: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, G*G, C, H, W) region images of processed `pixel_values` (B, C, H, W), cells numbered row by row,
    and the (B, G*G) mask of cells that hold a pixel off the border colour (the per-channel median of the
    image's outermost rows and columns)."""
    batch, channels, height, width = pixel_values.shape
    if grid < 1 or grid > min(height, width):
        raise ValueError(f"region grid must be between 1 and the image side ({min(height, width)}), got {grid}")
    edges = (pixel_values[..., 0, :], pixel_values[..., -1, :], pixel_values[..., :, 0], pixel_values[..., :, -1])
    border = torch.cat(edges, dim=-1).median(dim=-1).values[:, :, None, None]
    fill = border.expand_as(pixel_values)
    regions, occupied = [], []
    for row in range(grid):
        rows = slice(round(row * height / grid), round((row + 1) * height / grid))
        for column in range(grid):
            columns = slice(round(column * width / grid), round((column + 1) * width / grid))
            region = fill.clone()
            region[..., rows, columns] = pixel_values[..., rows, columns]
            regions.append(region)
            offset = (pixel_values[..., rows, columns] - border).abs().flatten(1).amax(dim=1)
            occupied.append(offset > FOREGROUND_TOLERANCE)
    return torch.stack(regions, dim=1), torch.stack(occupied, dim=1)


def region_mask(region_embeds: torch.Tensor) -> torch.Tensor:
    """(B, K) mask of the regions that hold something (non-zero embeddings)."""
    return region_embeds.norm(dim=-1) > 0


def closest_region(direction: torch.Tensor, region_embeds: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the occupied region with the highest cosine to `direction` (B, D); a row whose
    regions are all empty gets 0."""
    scores = torch.einsum("bd,bkd->bk", F.normalize(direction, dim=-1), region_embeds)
    return scores.masked_fill(~region_mask(region_embeds), float("-inf")).nan_to_num(neginf=-1e4).argmax(dim=1)


def pool_hypothesis_scores(scores: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Pool (B, K, N) gallery scores of K referent hypotheses per query into (B, N): a soft maximum,
    `temperature * logsumexp(scores / temperature)` over the hypotheses that `mask` (B, K) allows."""
    masked = (scores / temperature).masked_fill(~mask[:, :, None], float("-inf"))
    return temperature * torch.logsumexp(masked, dim=1)


__all__ = ["FOREGROUND_TOLERANCE", "closest_region", "grid_region_pixels", "pool_hypothesis_scores", "region_mask"]
