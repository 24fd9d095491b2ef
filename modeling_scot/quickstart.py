"""The offline quickstart: the whole SCOT pipeline on the built-in world, end to end, in minutes.

Rule-written triplets -> a `datasets.Dataset` on disk -> cached embeddings of the shipped world
CLIP -> a Combiner trained with `ScotTrainer` on text targets only -> zero-shot evaluation on the
world's held-out test split for SCOT, the training-free baselines and the oracle -> `results.json`
and a saved model. Every step reuses what an earlier (interrupted) run finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from datasets import Dataset, Image, load_from_disk
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .collators import CachedEmbeddingCollator
from .embedding_cache import build_embedding_cache
from .io_utils import write_json
from .evaluation.world import evaluate_world
from .model_card import eval_results_from_report
from .modeling_scot import ScotModel
from .trainer import ScotTrainer
from .triplets import TRIPLET_FEATURES, generate_world_triplets
from .world import clip_path

@dataclass
class QuickstartSettings:
    """Sizes and hyper-parameters of the quickstart (recorded in results.json)."""

    seed: int = 0
    num_scenes: int = 5000
    edits_per_scene: int = 8
    num_hard_negatives: int = 1
    epochs: int = 16
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    temperature: float = 0.2
    region_grid: int = 3
    test_queries: int = 1000


def scot_home() -> Path:
    """`$SCOT_HOME`, default `~/.cache/scot`."""
    return Path(os.environ.get("SCOT_HOME", Path.home() / ".cache" / "scot")).expanduser()


def triplet_dataset(settings: QuickstartSettings, folder: Path) -> Dataset:
    """The rule-written training triplets, generated once and kept at `folder`."""
    marker = folder / "settings.json"
    wanted = {k: getattr(settings, k) for k in ("seed", "num_scenes", "edits_per_scene", "num_hard_negatives")}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return load_from_disk(str(folder / "data"))
    records = generate_world_triplets(
        settings.seed, settings.num_scenes, settings.edits_per_scene, num_hard_negatives=settings.num_hard_negatives
    )
    total = settings.num_scenes * settings.edits_per_scene
    png_of_scene: dict[str, dict] = {}  # a scene's triplets share its image: PNG-encode it once, not per row
    rows = []
    for record in tqdm(records, total=total, desc="writing triplets", unit="triplet"):
        row = record.to_dict()
        if record.source_id not in png_of_scene:
            png_of_scene[record.source_id] = Image().encode_example(record.image)
        row["image"] = png_of_scene[record.source_id]
        rows.append(row)
    dataset = Dataset.from_list(rows, features=TRIPLET_FEATURES)
    tmp = folder / "data.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(folder / "data", ignore_errors=True)
    os.replace(tmp, folder / "data")
    write_json(marker, wanted)
    return load_from_disk(str(folder / "data"))


def train_combiner(
    model: ScotModel, dataset: Dataset, settings: QuickstartSettings, work: Path, device: torch.device
) -> dict:
    """Cache the frozen embeddings and train the Combiner on them; resumes from the last checkpoint."""
    cache, index = build_embedding_cache(model, dataset, work / "cache")
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        optim="adamw_torch_fused",
        remove_unused_columns=False,
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=50,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_drop_last=True,
        use_cpu=device.type == "cpu",
    )
    # Plain dict rows: fetching a batch of Arrow rows takes longer than the training step itself.
    rows = index.to_list()
    trainer = ScotTrainer(model=model, args=args, train_dataset=rows, data_collator=CachedEmbeddingCollator(cache))
    checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    return {"train_loss": round(result.training_loss, 4), "steps": result.global_step}


def run_quickstart(
    output: Path, settings: QuickstartSettings, device: torch.device, encoder_dtype: torch.dtype = torch.float32
) -> dict:
    """Run the quickstart into `output`; returns the results written to `output/results.json`."""
    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    work = output / "work"
    dataset = triplet_dataset(settings, work / "triplets")
    torch.manual_seed(settings.seed)
    model = ScotModel.from_clip(
        clip_path(), dtype=encoder_dtype, temperature=settings.temperature, region_grid=settings.region_grid
    ).to(device)
    training = train_combiner(model, dataset, settings, work, device)
    evaluation = evaluate_world(model, settings.seed, num_queries=settings.test_queries)
    model.save_pretrained(
        output / "model",
        model_card={
            "eval_results": eval_results_from_report(evaluation),
            "training": {
                "num_triplets": len(dataset),
                "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate,
                "data": f"built-in world, rules backend, seed {settings.seed}",
            }
        },
    )
    results = {
        "seed": settings.seed,
        "train_triplets": len(dataset),
        "test_queries": evaluation["test_queries"],
        "gallery_size": evaluation["gallery_size"],
        "methods": evaluation["methods"],
        "slerp_alpha": evaluation.get("slerp_alpha"),
        "recall@1_by_edit_type": evaluation["recall@1_by_edit_type"],
        "training": training,
        "settings": asdict(settings),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(output / "results.json", results)
    return results


__all__ = ["QuickstartSettings", "run_quickstart", "scot_home", "triplet_dataset"]
