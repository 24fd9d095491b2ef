"""Can grid-region embeddings of the reference image give the Combiner the object an edit refers to?

The frozen world CLIP embeds each reference image once whole (V) and once per cell of a G x G grid, with
everything outside the cell filled with the image's border colour (a masked region image). A Combiner then
trains on the quickstart's rule-written triplets (all edit types, text targets only) with the SCOT loss,
its text input being the modification T_m plus a learned linear map of one region embedding, the edit's
referent. Training picks the referent from text alone: the region closest to T_c - T_u, what the caption
loses. At retrieval (the world's validation benchmark, 1,000 queries of all types, each reference removed
from its ranking) the referent comes from:

- `modification`: the region closest to T_m (zero-shot referring, no label);
- `true object` (a ceiling, not a method): the cell of the edit's first object.

A gated Combiner learns how much of the region enters its text input from (T_m, region), so that an
edit without a referent (adding an object) can ignore it; it trains on the region closest to T_c - T_u
among the cells that hold something (any pixel off the border colour) and retrieves with the occupied
region closest to T_m, with the true object's cell, or, given `--referring-clip DIR`, with the occupied
region that another CLIP (its own region embeddings and T_m) finds closest.

The report also gives a plain Combiner trained the same way, how well each region embedding matches the
full description of the object in its cell, and the referring accuracy of T_m (over all cells and over the
occupied ones) and of T_c - T_u per edit type. Prints and writes one JSON object.

    python bench/region_probe.py --output region_probe.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import get_cosine_schedule_with_warmup

sys.path.insert(0, str(Path(__file__).resolve().parent))

from remove_probe import emit, scot_step  # noqa: E402

from modeling_scot import ScotModel  # noqa: E402
from modeling_scot.encoding import encode_images, encode_texts, resolve_processor  # noqa: E402
from modeling_scot.evaluation.metrics import recall_at_k  # noqa: E402
from modeling_scot.evaluation.runner import recall_at_1_by_edit_type  # noqa: E402
from modeling_scot.evaluation.world import load_world, validation_seed  # noqa: E402
from modeling_scot.modeling_scot import Combiner  # noqa: E402
from modeling_scot.triplets import generate_world_triplets  # noqa: E402
from modeling_scot.world import build_benchmark, caption, clip_path, render_scene  # noqa: E402
from modeling_scot.world.scene import Scene  # noqa: E402

HARD_NEGATIVES = 3
VALIDATION_QUERIES = 1000
REFERRING = ("modification", "true object")
GATED_REFERRING = ("modification, occupied cells", "true object")
REFERRING_CLIP = "referring CLIP"
NO_SUBJECT = -1
"""The referent cell of an edit that changes no object of the reference (add)."""


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


@torch.no_grad()
def region_embeds(model: ScotModel, images: list, grid: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, grid * grid, D) embeddings of each image with all but one grid cell filled with its border colour
    (`grid_region_pixels`; every cell is encoded), and the (N, grid * grid) mask of
    cells that hold content (a pixel off that colour)."""
    processor = resolve_processor(model, None)
    parts, occupied = [], []
    for start in range(0, len(images), batch_size):
        pixels = processor(images=images[start : start + batch_size], return_tensors="pt")["pixel_values"]
        regions, cells = grid_region_pixels(pixels, grid)
        parts.append(model.get_image_features(regions.flatten(0, 1)).view(len(pixels), grid * grid, -1))
        occupied.append(cells)
    return torch.cat(parts), torch.cat(occupied)


def training_data(model: ScotModel, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The quickstart's triplets for `--seed`, embedded: V and regions per row, T_m, T_u, T_c, negatives."""
    records = list(generate_world_triplets(args.seed, args.num_scenes, 4, num_hard_negatives=HARD_NEGATIVES))
    image_of: dict[str, int] = {}
    images = []
    for record in records:
        if record.source_id not in image_of:
            image_of[record.source_id] = len(images)
            images.append(record.image)
    rows = torch.tensor([image_of[record.source_id] for record in records])
    regions, occupied = region_embeds(model, images, args.grid, batch_size=256)
    texts = lambda items: encode_texts(model, items, batch_size=1024, progress=False)
    negatives = [(record.hard_negatives + [record.modified_caption] * HARD_NEGATIVES)[:HARD_NEGATIVES] for record in records]
    return {
        "image": encode_images(model, images, batch_size=512, progress=False)[rows],
        "regions": regions[rows],
        "occupied": occupied[rows],
        "modification": texts([record.modification for record in records]),
        "target": texts([record.modified_caption for record in records]),
        "caption": texts([record.caption for record in records]),
        "negatives": texts([text for group in negatives for text in group]).view(len(records), HARD_NEGATIVES, -1),
        "negative_mask": torch.tensor([[i < len(record.hard_negatives) for i in range(HARD_NEGATIVES)] for record in records]),
    }


def validation_data(model: ScotModel, args: argparse.Namespace) -> dict:
    """The validation benchmark of `--seed`: gallery, query inputs, true referent cells and edit types."""
    benchmark = build_benchmark(validation_seed(args.seed), VALIDATION_QUERIES)
    queries = benchmark.queries
    gallery_images = [render_scene(scene) for scene in benchmark.gallery]
    gallery = encode_images(model, gallery_images, batch_size=512, progress=False)
    references, query_reference = torch.tensor(benchmark.reference_ids).unique(return_inverse=True)
    reference_images = [gallery_images[i] for i in references.tolist()]
    regions, occupied = region_embeds(model, reference_images, args.grid, batch_size=256)
    texts = lambda items: encode_texts(model, items, batch_size=1024, progress=False)
    picks = {}
    if args.referring_clip is not None:
        referring = ScotModel.from_clip(args.referring_clip).eval()
        their_regions, _ = region_embeds(referring, reference_images, args.grid, batch_size=256)
        their_modifications = encode_texts(
            referring, [query.modification for query in queries], batch_size=1024, progress=False
        )
        picks[REFERRING_CLIP] = closest_region(
            their_modifications, their_regions[query_reference], occupied[query_reference]
        )
    return {
        "picks": picks,
        "benchmark": benchmark,
        "gallery": gallery,
        "image": gallery[benchmark.reference_ids],
        "regions": regions[query_reference],
        "occupied": occupied[query_reference],
        "modification": texts([query.modification for query in queries]),
        "loss_direction": texts([caption(q.reference) for q in queries]) - texts([caption(q.target) for q in queries]),
        "objects": texts([caption(Scene(query.edit.subjects()[:1] or query.reference.objects[:1])) for query in queries]),
        "cells": torch.tensor([query.edit.subjects()[0].cell if query.edit.subjects() else NO_SUBJECT for query in queries]),
        "edit_types": [query.edit_type for query in queries],
    }


def closest_region(direction: torch.Tensor, regions: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the region embedding with the highest cosine to `direction`, per row, among the `allowed`
    regions (a (B, K) mask; all when None)."""
    scores = torch.einsum("bd,bkd->bk", F.normalize(direction, dim=-1), regions)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.argmax(dim=1)


class RegionCombiner(nn.Module):
    """A Combiner whose text input is T_m plus a linear map of the referred region (none: plain Combiner),
    optionally scaled by a gate in (0, 1) computed from (T_m, region)."""

    def __init__(self, dim: int, with_region: bool, gated: bool = False):
        super().__init__()
        self.combiner = Combiner(dim, 2 * dim, 2 * dim)
        self.region = nn.Linear(dim, dim) if with_region else None
        self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1)) if gated else None

    def forward(self, image: torch.Tensor, text: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        if self.region is not None:
            weight = 1.0 if self.gate is None else torch.sigmoid(self.gate(torch.cat([text, region], dim=-1)))
            text = text + weight * self.region(region)
        return self.combiner(image, text)[0]


def train(
    data: dict[str, torch.Tensor], with_region: bool, args: argparse.Namespace, gated: bool = False
) -> RegionCombiner:
    """Train on all rows for `--epochs` with the SCOT loss. The referent is the region closest to T_c - T_u
    (for a `gated` model, among the occupied ones)."""
    torch.manual_seed(args.seed)
    rows_total = len(data["image"])
    model = RegionCombiner(data["image"].shape[1], with_region, gated)
    steps_per_epoch = rows_total // args.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, steps_per_epoch // 2, steps_per_epoch * args.epochs)
    referent = closest_region(data["caption"] - data["target"], data["regions"], data["occupied"] if gated else None)
    for _ in range(args.epochs):
        order = torch.randperm(rows_total)
        for step in range(steps_per_epoch):
            rows = order[step * args.batch_size : (step + 1) * args.batch_size]
            region = data["regions"][rows, referent[rows]]
            query = model(data["image"][rows], data["modification"][rows], region)
            scot_step(query, data, rows, args.temperature, optimizer, schedule)
    return model.eval()


def percent_by_edit_type(values: list[float], edit_types: list[str]) -> dict[str, float]:
    """Mean of `values` (percent) per edit type and over all queries."""
    groups: dict[str, list[float]] = defaultdict(list)
    for value, edit_type in zip(values, edit_types):
        groups[edit_type].append(value)
    means = {name: round(100 * sum(group) / len(group), 1) for name, group in sorted(groups.items())}
    return {"all": round(100 * sum(values) / len(values), 1), **means}


def recall_at_1(queries: torch.Tensor, validation: dict) -> dict[str, float]:
    """Recall@1 (percent) over all validation queries and per edit type, each reference removed from its ranking."""
    benchmark = validation["benchmark"]
    scores = queries @ validation["gallery"].T
    exclude = [[reference] for reference in benchmark.reference_ids]
    overall = recall_at_k(scores, benchmark.target_ids, exclude, (1,))[1]
    by_type = recall_at_1_by_edit_type(load_world(benchmark.seed, len(benchmark.queries)), scores.numpy())
    return {"all": round(overall, 2), **by_type}


def report(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    model = ScotModel.from_clip(clip_path()).eval()
    data = training_data(model, args)
    if len(data["image"]) < args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(data['image'])} training triplets")
    validation = validation_data(model, args)
    regions, cells, edit_types = validation["regions"], validation["cells"], validation["edit_types"]
    rows = torch.arange(len(cells))
    zero_shot = closest_region(validation["modification"], regions)
    zero_shot_occupied = closest_region(validation["modification"], regions, validation["occupied"])
    referents = {"modification": zero_shot, "true object": torch.where(cells == NO_SUBJECT, zero_shot, cells)}
    gated_referents = {
        "modification, occupied cells": zero_shot_occupied,
        "true object": torch.where(cells == NO_SUBJECT, zero_shot_occupied, cells),
        **validation["picks"],
    }
    with_subject = (cells != NO_SUBJECT).nonzero().squeeze(1).tolist()
    subject_types = [edit_types[i] for i in with_subject]
    accuracy = lambda chosen: percent_by_edit_type((chosen == cells)[with_subject].float().tolist(), subject_types)
    result = {
        "settings": {
            key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items() if key != "output"
        },
        "train_triplets": len(data["image"]),
        "object_region_match": accuracy(closest_region(validation["objects"], regions)),
        "referring_accuracy": {
            "modification": accuracy(zero_shot),
            **{f"{name}, occupied cells": accuracy(chosen) for name, chosen in validation["picks"].items()},
            "modification, occupied cells": accuracy(zero_shot_occupied),
            "caption loss direction": accuracy(closest_region(validation["loss_direction"], regions)),
        },
        "recall@1": {},
    }
    plain, with_region, gated = train(data, False, args), train(data, True, args), train(data, True, args, gated=True)
    with torch.no_grad():
        queries = plain(validation["image"], validation["modification"], regions[:, 0])
        result["recall@1"]["combiner"] = recall_at_1(queries, validation)
        for name in REFERRING:
            queries = with_region(validation["image"], validation["modification"], regions[rows, referents[name]])
            result["recall@1"][f"combiner + region ({name})"] = recall_at_1(queries, validation)
        for name, chosen in gated_referents.items():
            queries = gated(validation["image"], validation["modification"], regions[rows, chosen])
            result["recall@1"][f"gated combiner + region ({name})"] = recall_at_1(queries, validation)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seed", type=int, default=0, help="world seed of the triplets; validation uses its validation seed")
parser.add_argument("--num-scenes", type=int, default=10000)
parser.add_argument("--grid", type=int, default=3, help="regions per side (the world's grid is 3 x 3)")
parser.add_argument("--epochs", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--learning-rate", type=float, default=1e-3)
parser.add_argument("--temperature", type=float, default=0.2)
parser.add_argument("--referring-clip", type=Path, default=None, help="a CLIP folder that also picks referents")
parser.add_argument("--output", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    if min(args.grid, args.num_scenes, args.epochs, args.batch_size) < 1:
        parser.error("--grid, --num-scenes, --epochs and --batch-size must be >= 1")
    if args.referring_clip is not None and not (args.referring_clip / "config.json").is_file():
        parser.error(f"--referring-clip {args.referring_clip} is not a CLIP folder (no config.json)")
    emit(report(args), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
