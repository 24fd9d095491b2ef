"""SCOT on a BLIP-2 backbone on the built-in world, and which pooled V the Combiner should take.

    python -m hub.train_world_blip2 --output /tmp/world-blip2 --seed 0
    python bench/blip2_world.py --encoder /tmp/world-blip2 --seeds 0 --output /tmp/blip2-world.json

Per seed and per `image_pooling` (how the reference's K query vectors become V):
- `text_matched` (the default): the query vector most similar to the modification text T_m (the training cache
  then keeps all K vectors of each image);
- `mean`: their normalised mean, one vector per image whatever the text;
the quickstart's rule-written triplets and training settings train a Combiner on the BLIP-2 retrieval model's
embeddings, then every training-free method and SCOT are scored on the world benchmark's test split through
`evaluate_world` (gallery images scored by their best query vector; Slerp's alpha chosen on the validation split
for each pooling). The training-free methods read the same V as the Combiner, so their rows compare the poolings
without any training. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from modeling_scot.configuration_scot import IMAGE_POOLINGS
from modeling_scot.evaluation.world import evaluate_world
from modeling_scot.io_utils import write_json
from modeling_scot.modeling_scot import ScotModel
from modeling_scot.quickstart import QuickstartSettings, triplet_dataset
from modeling_scot.training import fit_combiner


def run_pooling(encoder: str, pooling: str, seed: int, num_queries: int, work: Path) -> dict:
    """Train a Combiner with `pooling` and evaluate it and the training-free methods on the world's test split."""
    started = time.monotonic()
    settings = QuickstartSettings(seed=seed, test_queries=num_queries)
    triplets = triplet_dataset(settings, work / f"triplets-{seed}")
    torch.manual_seed(seed)
    model = ScotModel.from_encoder(encoder, temperature=settings.temperature, image_pooling=pooling)
    args = settings.training_arguments(work / f"trainer-{seed}-{pooling}", torch.device("cpu"))
    fit_combiner(model, triplets, args, work / "cache", resume=True)
    model.eval()
    report = evaluate_world(model, seed, num_queries=num_queries, cache_dir=work / "embeddings", progress=False)
    return {
        "recall@1": {name: metrics["recall@1"] for name, metrics in report["methods"].items()},
        "recall@1_by_edit_type": report["recall@1_by_edit_type"],
        "settings": report["settings"],
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="a BLIP-2 retrieval model folder with its processor")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--poolings", nargs="+", choices=IMAGE_POOLINGS, default=list(IMAGE_POOLINGS))
    parser.add_argument("--test-queries", type=int, default=1000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/blip2-world"))
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    encoder = ScotModel.from_encoder(args.encoder)
    if not encoder.encoder_adapter.multi_vector:
        parser.error(f"--encoder {args.encoder} is a {encoder.encoder_adapter.family} model, not BLIP-2's retrieval model")
    runs = []
    for seed in args.seeds:
        poolings = {name: run_pooling(args.encoder, name, seed, args.test_queries, args.work_dir) for name in args.poolings}
        runs.append({"seed": seed} | poolings)
    result = {"encoder": args.encoder, "runs": runs}
    print(json.dumps(result))
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
