"""SCOT on a BLIP-2 backbone on the built-in world, and which pooled V the Combiner should take.

    python -m hub.train_world_blip2 --output /tmp/world-blip2 --seed 0
    python bench/blip2_world.py --encoder /tmp/world-blip2 --seeds 0 --output /tmp/blip2-world.json

Per seed: the quickstart's rule-written triplets and training settings, a Combiner trained on the BLIP-2
retrieval model's embeddings (V: the mean of the reference's normalised query vectors), then every training-free
method and SCOT on the world benchmark's test split through `evaluate_world` (gallery images scored by their best
query vector; Slerp's alpha chosen on the validation split).

Then the pooling question: the training-free methods (image only, sum, Slerp) with V from each pooling of the
reference's K query vectors,
- `mean`: their normalised mean, one vector per image whatever the text (what the model uses);
- `text_matched`: the query vector most similar to the modification text T_m (a text-dependent choice, which a
  per-image cache cannot hold);
Slerp's alpha is chosen on the validation split for each pooling separately. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from modeling_scot.encoders import mean_pooled
from modeling_scot.evaluation import compute_metrics
from modeling_scot.evaluation.runner import embed_split
from modeling_scot.evaluation.world import evaluate_world, load_world, load_world_validation
from modeling_scot.io_utils import write_json
from modeling_scot.methods import Slerp, build_method
from modeling_scot.modeling_scot import ScotModel
from modeling_scot.quickstart import QuickstartSettings, triplet_dataset
from modeling_scot.similarity import image_scores
from modeling_scot.training import fit_combiner

OPTIONS = {"batch_size": 128, "num_workers": 0, "progress": False}
POOLED_METHODS = ("image", "sum", "slerp")


def reference_vectors(split, embeddings) -> torch.Tensor:
    """(Q, K, D) the query vectors of each query's reference (world references are gallery images)."""
    return embeddings.gallery[[split.gallery_index[query.reference] for query in split.queries]]


def text_matched(vectors: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """(Q, D) for each query, its reference's query vector most similar to its modification text."""
    best = torch.einsum("qkd,qd->qk", vectors, texts).argmax(dim=1)
    return vectors[torch.arange(len(vectors)), best]


POOLINGS = {"mean": lambda vectors, texts: mean_pooled(vectors), "text_matched": text_matched}


def recall_at_1(model, method, split, embeddings, references) -> float:
    queries = method.queries(model, references, embeddings.texts)
    return compute_metrics(split, image_scores(queries, embeddings.gallery).numpy())["recall@1"]


def pooling_comparison(model: ScotModel, seed: int, num_queries: int, cache: Path) -> dict:
    """Recall@1 of the training-free methods on the test split with V from each pooling."""
    test, validation = load_world(seed, num_queries), load_world_validation(seed)
    splits = {"test": test, "validation": validation}
    embedded = {name: embed_split(model, split, cache, OPTIONS) for name, split in splits.items()}
    result = {}
    for pooling, pool in POOLINGS.items():
        references = {
            name: pool(reference_vectors(splits[name], embedded[name]), embedded[name].texts) for name in splits
        }
        alphas = Slerp.search_space["alpha"]
        validation_recalls = [
            recall_at_1(model, Slerp(alpha=alpha), validation, embedded["validation"], references["validation"])
            for alpha in alphas
        ]
        alpha = alphas[validation_recalls.index(max(validation_recalls))]
        methods = {name: build_method(name, "world") for name in POOLED_METHODS} | {"slerp": Slerp(alpha=alpha)}
        result[pooling] = {
            name: recall_at_1(model, method, test, embedded["test"], references["test"])
            for name, method in methods.items()
        } | {"slerp_alpha": alpha}
    return result


def run_seed(encoder: str, seed: int, num_queries: int, work: Path) -> dict:
    started = time.monotonic()
    settings = QuickstartSettings(seed=seed, test_queries=num_queries)
    triplets = triplet_dataset(settings, work / f"triplets-{seed}")
    torch.manual_seed(seed)
    model = ScotModel.from_encoder(encoder, temperature=settings.temperature)
    args = settings.training_arguments(work / f"trainer-{seed}", torch.device("cpu"))
    fit_combiner(model, triplets, args, work / "cache", resume=True)
    model.eval()
    report = evaluate_world(model, seed, num_queries=num_queries, cache_dir=work / "embeddings", progress=False)
    return {
        "seed": seed,
        "recall@1": {name: metrics["recall@1"] for name, metrics in report["methods"].items()},
        "recall@1_by_edit_type": report["recall@1_by_edit_type"],
        "settings": report["settings"],
        "pooling": pooling_comparison(model, seed, num_queries, work / "embeddings"),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="a BLIP-2 retrieval model folder with its processor")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--test-queries", type=int, default=1000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/blip2-world"))
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    encoder = ScotModel.from_encoder(args.encoder)
    if not encoder.encoder_adapter.multi_vector:
        parser.error(f"--encoder {args.encoder} is a {encoder.encoder_adapter.family} model, not BLIP-2's retrieval model")
    result = {
        "encoder": args.encoder,
        "runs": [run_seed(args.encoder, seed, args.test_queries, args.work_dir) for seed in args.seeds],
    }
    print(json.dumps(result))
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
