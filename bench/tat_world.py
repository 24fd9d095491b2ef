"""Text-Anchored Tuning on the built-in world: Slerp on the shipped world CLIP against Slerp on the same CLIP with
its image tower TAT-tuned, on the world benchmark's test split.

    python bench/tat_world.py --seeds 0 1 --output /tmp/tat-world

Per seed: the quickstart's rule-written triplets of that seed (training scenes only; one row per scene, whose
`image` and `caption` are the training pairs), LoRA adapters trained on them with TAT's loss against the frozen
text tower, merged into the image tower; then `evaluate_world` on the untuned and the tuned encoder, each with its
own gallery embeddings. TAT's learning rate is chosen among `--learning-rates` by Slerp's Recall@1 on the seed's
validation split, and Slerp's alpha on that split for each encoder: nothing is chosen on the test split.
Image-only, text-only and the oracle (the target's true caption) are reported beside Slerp. Prints one JSON object
(also written to OUTPUT/results.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from modeling_scot.evaluation.runner import evaluate_split
from modeling_scot.evaluation.world import evaluate_world, load_world_validation
from modeling_scot.io_utils import write_json
from modeling_scot.methods.tat_model import load_tat_encoder
from modeling_scot.methods.tat_training import TatTrainingArguments, train_tat
from modeling_scot.modeling_scot import ScotModel
from modeling_scot.quickstart import QuickstartSettings, triplet_dataset
from modeling_scot.world import clip_path

METHODS = ("slerp", "image", "text")
RECALLS = ("recall@1", "recall@5", "recall@10")
ENCODERS = ("untuned", "tat")


def summary(report: dict) -> dict:
    """Recall@K of every method (and the oracle) and the Slerp alpha chosen on the validation split."""
    return {
        "slerp_alpha": report["settings"]["slerp"]["alpha"],
        "methods": {name: {key: metrics[key] for key in RECALLS} for name, metrics in report["methods"].items()},
    }


def validation_recall(model: ScotModel, seed: int, cache_dir: Path) -> float:
    """Slerp's Recall@1 on the validation split of `seed`, its alpha chosen there."""
    validation = load_world_validation(seed)
    report = evaluate_split(model, validation, ("slerp",), cache_dir=cache_dir, validation=validation, progress=False)
    return report["methods"]["slerp"]["recall@1"]


def train_candidate(seed: int, learning_rate: float, triplets, settings: argparse.Namespace, work: Path) -> dict:
    """TAT trained with `learning_rate` into `work/tat-SEED-lrLR`: its training metrics, seconds and validation
    Recall@1."""
    started = time.monotonic()
    args = TatTrainingArguments(
        output_dir=str(work),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=learning_rate,
        dataloader_drop_last=True,  # a last batch of a few images has almost no negatives
        seed=seed,
        data_seed=seed,
        logging_steps=10,
        disable_tqdm=True,
        use_cpu=True,
    )
    folder = work / f"tat-{seed}-lr{learning_rate:g}"
    _, training = train_tat(clip_path(), triplets, args, folder, cache_dir=work / "caption-cache", resume=True)
    seconds = round(time.monotonic() - started, 1)
    tuned = ScotModel.from_encoder(load_tat_encoder(folder / "model"))
    return training | {"model": str(folder / "model"), "train_seconds": seconds,
                       "validation_slerp_recall@1": validation_recall(tuned, seed, work / "embeddings")}  # fmt: skip


def run_seed(seed: int, settings: argparse.Namespace, work: Path) -> dict:
    started = time.monotonic()
    triplets = triplet_dataset(
        QuickstartSettings(seed=seed, num_scenes=settings.num_scenes, edits_per_scene=1, num_hard_negatives=0),
        work / f"triplets-{seed}",
    )
    evaluate = {"cache_dir": work / "embeddings", "num_queries": settings.test_queries, "progress": False}
    base = ScotModel.from_encoder(clip_path())
    untuned = evaluate_world(base, seed, METHODS, **evaluate)
    candidates = {rate: train_candidate(seed, rate, triplets, settings, work) for rate in settings.learning_rates}
    chosen = max(settings.learning_rates, key=lambda rate: candidates[rate]["validation_slerp_recall@1"])
    tuned_encoder = ScotModel.from_encoder(load_tat_encoder(candidates[chosen]["model"]))
    tuned = evaluate_world(tuned_encoder, seed, METHODS, **evaluate)
    return {
        "seed": seed,
        "test_queries": tuned["queries"],
        "gallery_size": tuned["gallery_size"],
        "untuned_validation_slerp_recall@1": validation_recall(base, seed, work / "embeddings"),
        "tat_candidates": {f"{rate:g}": candidate for rate, candidate in candidates.items()},
        "tat_learning_rate": chosen,
        "untuned": summary(untuned),
        "tat": summary(tuned),
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", type=Path, default=Path("/tmp/tat-world"))
    parser.add_argument("--num-scenes", type=int, default=2000, help="training scenes (image-caption pairs)")
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-4, 1e-3],
                        help="TAT learning rates; the one with the best validation Slerp Recall@1 is tested")
    parser.add_argument("--test-queries", type=int, default=1000)
    settings = parser.parse_args()
    torch.set_num_threads(2)
    started = time.monotonic()
    runs = [run_seed(seed, settings, settings.output) for seed in settings.seeds]
    mean = {
        encoder: {
            method: {key: round(sum(run[encoder]["methods"][method][key] for run in runs) / len(runs), 2)
                     for key in RECALLS}  # fmt: skip
            for method in runs[0][encoder]["methods"]
        }
        for encoder in ENCODERS
    }
    results = {
        "benchmark": "world",
        "encoder": "world CLIP (modeling_scot/assets/world-clip)",
        "settings": vars(settings) | {"output": str(settings.output)},
        "runs": runs,
        "mean": mean,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(settings.output / "results.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
