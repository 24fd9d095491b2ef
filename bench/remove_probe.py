"""Why remove edits are hard for the Combiner: caption ranking on remove-only world triplets, by input.

Draws rule-written remove triplets from training scenes and training combinations, embeds them with the
shipped world CLIP, and trains a fresh Combiner on each pair of inputs with the SCOT loss. A held-out
triplet counts as ranked when its query scores its modified caption above every other modified caption of
its batch, its hard negatives and its original caption. Each probe then answers the remove queries of the world's validation benchmark (seed -1, 1,000
queries of all types; the gallery as in `evaluate_world`), from the same inputs, by Recall@1 with each
query's reference removed; the oracle row retrieves with the true modified caption. The inputs:

- `image + modification`: what SCOT gets (V, T_m). The modification names the object as briefly as the
  scene allows ("remove the circle").
- `caption + modification`: the reference caption T_c in place of V.
- `image + removed object` / `caption + removed object`: the full description of the removed object
  ("a medium outlined purple circle in the bottom middle") in place of T_m.

Prints and writes one JSON object.

    python bench/remove_probe.py --output remove_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from modeling_scot import ScotModel
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.evaluation.metrics import recall_at_k
from modeling_scot.evaluation.world import validation_seed
from modeling_scot.io_utils import write_json
from modeling_scot.losses import scot_contrastive_loss
from modeling_scot.modeling_scot import Combiner
from modeling_scot.world import build_benchmark, caption, clip_path, render_scene
from modeling_scot.world.edits import sample_edit
from modeling_scot.world.negatives import hard_negative_captions
from modeling_scot.world.scene import Scene, sample_scene
from modeling_scot.world.split import is_test_combination, is_test_scene

INPUTS = {
    "image + modification": ("image", "modification"),
    "caption + modification": ("caption", "modification"),
    "image + removed object": ("image", "removed_object"),
    "caption + removed object": ("caption", "removed_object"),
}
HARD_NEGATIVES = 3
VALIDATION_QUERIES = 1000


def remove_triplets(count: int, seed: int) -> dict[str, list]:
    """`count` remove triplets of training scenes by training combinations, as columns."""
    rng = random.Random(seed)
    columns: dict[str, list] = {name: [] for name in ("reference", "modification", "target", "caption", "negatives", "removed")}
    while len(columns["reference"]) < count:
        scene = sample_scene(rng)
        edit = None if is_test_scene(scene) else sample_edit(scene, rng, "remove")
        target = None if edit is None else edit.apply(scene)
        if target is None or is_test_scene(target) or is_test_combination(scene, target):
            continue
        negatives = hard_negative_captions(scene, target, edit, rng, HARD_NEGATIVES)
        if len(negatives) < HARD_NEGATIVES:
            continue
        columns["reference"].append(scene)
        columns["modification"].append(edit.describe(scene, rng))
        columns["target"].append(caption(target, rng))
        columns["caption"].append(caption(scene, rng))
        columns["negatives"].extend(negatives)
        columns["removed"].append(caption(Scene(edit.subjects())))
    return columns


def embed(model: ScotModel, columns: dict[str, list], batch_size: int) -> dict[str, torch.Tensor]:
    """The frozen embeddings every probe reads."""
    texts = lambda key: encode_texts(model, columns[key], batch_size=batch_size)
    return {
        "image": encode_images(model, [render_scene(scene) for scene in columns["reference"]], batch_size=batch_size),
        "modification": texts("modification"),
        "target": texts("target"),
        "caption": texts("caption"),
        "negatives": texts("negatives").view(len(columns["reference"]), HARD_NEGATIVES, -1),
        "removed_object": texts("removed"),
    }


def validation_removals(model: ScotModel, batch_size: int) -> dict:
    """The validation benchmark's remove queries: their inputs as in `embed`, gallery, targets and references."""
    benchmark = build_benchmark(validation_seed(0), VALIDATION_QUERIES)
    queries = [query for query in benchmark.queries if query.edit_type == "remove"]
    texts = lambda items: encode_texts(model, items, batch_size=batch_size)
    gallery = encode_images(model, [render_scene(scene) for scene in benchmark.gallery], batch_size=batch_size)
    return {
        "gallery": gallery,
        "image": gallery[[query.reference_id for query in queries]],
        "caption": texts([caption(query.reference) for query in queries]),
        "modification": texts([query.modification for query in queries]),
        "removed_object": texts([caption(Scene(query.edit.subjects())) for query in queries]),
        "target": texts([caption(query.target) for query in queries]),
        "target_ids": [query.target_id for query in queries],
        "exclude": [[query.reference_id] for query in queries],
    }


def retrieval_at_1(queries: torch.Tensor, removals: dict) -> float:
    """Recall@1 (%) of `queries` for the validation remove queries, each reference removed from its ranking."""
    return round(recall_at_k(queries @ removals["gallery"].T, removals["target_ids"], removals["exclude"], (1,))[1], 1)


def ranked(combiner: Combiner, embeds: dict[str, torch.Tensor], inputs: tuple[str, str], rows: torch.Tensor, batch: int) -> float:
    """Percent of `rows` whose modified caption outscores the batch's others, its hard negatives and its caption."""
    hits = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            query = combiner(embeds[inputs[0]][chunk], embeds[inputs[1]][chunk])[0]
            targets = embeds["target"][chunk]
            positive = (query * targets).sum(-1)
            others = torch.cat(
                [
                    (query @ targets.T).fill_diagonal_(-math.inf),
                    torch.einsum("bd,bkd->bk", query, embeds["negatives"][chunk]),
                    (query * embeds["caption"][chunk]).sum(-1, keepdim=True),
                ],
                dim=1,
            )
            hits.append(positive > others.max(1).values)
    return round(100 * torch.cat(hits).float().mean().item(), 1)


def scot_step(
    query: torch.Tensor,
    embeds: dict[str, torch.Tensor],
    rows: torch.Tensor,
    temperature: float,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """One optimiser step on the SCOT loss of `query` against the `rows` of `embeds` (`target`, `negatives`,
    optional `negative_mask`, `caption`)."""
    mask = embeds.get("negative_mask")
    loss = scot_contrastive_loss(
        query,
        embeds["target"][rows],
        1 / temperature,
        negative_embeds=embeds["negatives"][rows],
        negative_mask=None if mask is None else mask[rows],
        caption_embeds=embeds["caption"][rows],
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()


def probe(
    embeds: dict[str, torch.Tensor], removals: dict, inputs: tuple[str, str], args: argparse.Namespace
) -> dict[str, float]:
    """Train a fresh Combiner on `inputs` of the training rows; caption ranking on training and held-out rows
    and validation remove Recall@1."""
    torch.manual_seed(args.seed)
    dim = embeds["image"].shape[1]
    combiner = Combiner(dim, 2 * dim, 2 * dim)
    optimizer = torch.optim.AdamW(combiner.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=args.steps)
    train_rows = len(embeds["image"]) - args.held_out
    for _ in range(args.steps):
        rows = torch.randint(train_rows, (args.batch_size,))
        query = combiner(embeds[inputs[0]][rows], embeds[inputs[1]][rows])[0]
        scot_step(query, embeds, rows, args.temperature, optimizer, schedule)
    combiner.eval()
    held_out = torch.arange(train_rows, len(embeds["image"]))
    with torch.no_grad():
        queries = combiner(removals[inputs[0]], removals[inputs[1]])[0]
    return {
        "train": ranked(combiner, embeds, inputs, torch.arange(min(train_rows, args.held_out)), args.batch_size),
        "held_out": ranked(combiner, embeds, inputs, held_out, args.batch_size),
        "validation_remove_recall@1": retrieval_at_1(queries, removals),
    }


def emit(report: dict, output: Path | None) -> None:
    """Print `report` as JSON and, with `output`, write it there."""
    print(json.dumps(report, indent=2))
    if output is not None:
        write_json(output, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=30000)
    parser.add_argument("--held-out", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.held_out < args.triplets:
        parser.error(f"need 0 < --held-out < --triplets, got {args.held_out} and {args.triplets}")
    started = time.monotonic()
    model = ScotModel.from_clip(clip_path()).eval()
    embeds = embed(model, remove_triplets(args.triplets, args.seed), batch_size=512)
    removals = validation_removals(model, batch_size=512)
    report = {
        "settings": {key: value for key, value in vars(args).items() if key != "output"},
        "validation_remove_queries": len(removals["target_ids"]),
        "oracle_validation_remove_recall@1": retrieval_at_1(removals["target"], removals),
        "probes": {name: probe(embeds, removals, inputs, args) for name, inputs in INPUTS.items()},
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
