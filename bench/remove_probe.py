"""Why remove edits are hard for the Combiner: caption ranking on remove-only world triplets, by input.

Draws rule-written remove triplets from training scenes and training combinations, embeds them with the
shipped world CLIP, and trains a fresh Combiner on each pair of inputs with the SCOT loss. A held-out
triplet counts as ranked when its query scores its modified caption above every other modified caption of
its batch, its hard negatives and its original caption. The inputs:

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

from modeling_scot import ScotModel
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.io_utils import write_json
from modeling_scot.losses import scot_contrastive_loss
from modeling_scot.modeling_scot import Combiner
from modeling_scot.world import caption, clip_path, render_scene
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


def ranked(combiner: Combiner, embeds: dict[str, torch.Tensor], inputs: tuple[str, str], rows: torch.Tensor, batch: int) -> float:
    """Percent of `rows` whose modified caption outscores the batch's others, its hard negatives and its caption."""
    combiner.eval()
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
    combiner.train()
    return round(100 * torch.cat(hits).float().mean().item(), 1)


def probe(embeds: dict[str, torch.Tensor], inputs: tuple[str, str], args: argparse.Namespace) -> dict[str, float]:
    """Train a fresh Combiner on `inputs` of the training rows; caption ranking on training and held-out rows."""
    torch.manual_seed(args.seed)
    dim = embeds["image"].shape[1]
    combiner = Combiner(dim, 2 * dim, 2 * dim)
    optimizer = torch.optim.AdamW(combiner.parameters(), lr=args.learning_rate, weight_decay=0.01)
    train_rows = len(embeds["image"]) - args.held_out
    for step in range(args.steps):
        rows = torch.randint(train_rows, (args.batch_size,))
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        query = combiner(embeds[inputs[0]][rows], embeds[inputs[1]][rows])[0]
        loss = scot_contrastive_loss(
            query,
            embeds["target"][rows],
            1 / args.temperature,
            negative_embeds=embeds["negatives"][rows],
            caption_embeds=embeds["caption"][rows],
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = torch.arange(train_rows, len(embeds["image"]))
    return {
        "train": ranked(combiner, embeds, inputs, torch.arange(min(train_rows, args.held_out)), args.batch_size),
        "held_out": ranked(combiner, embeds, inputs, held_out, args.batch_size),
    }


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
    report = {
        "settings": {key: value for key, value in vars(args).items() if key != "output"},
        "caption_ranking": {name: probe(embeds, inputs, args) for name, inputs in INPUTS.items()},
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    if args.output is not None:
        write_json(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
