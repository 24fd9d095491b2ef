"""The offline quickstart: the whole SCOT pipeline on the built-in world, end to end, in minutes.

Rule-written triplets -> a `datasets.Dataset` on disk -> cached embeddings of the shipped world
CLIP -> a Combiner trained with `ScotTrainer` on text targets only -> zero-shot evaluation on the
world's held-out test split for SCOT, the training-free baselines and the oracle -> `results.json`
and a saved model. Every step reuses what an earlier (interrupted) run finished.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from datasets import Dataset, Image, load_from_disk
from transformers import set_seed

from .evaluation.world import evaluate_world
from .io_utils import replace_folder_atomic, write_json
from .model_card import eval_results_from_report
from .modeling_scot import ScotModel
from .training import ScotTrainingArguments, check_model_output, fit_combiner, training_card
from .triplets import TRIPLET_FEATURES, generate_world_triplets
from .world import clip_path

@dataclass
class QuickstartSettings:
    """Sizes and hyper-parameters of the quickstart (recorded in results.json); `scot quickstart` takes each
    field as an option."""

    seed: int = field(default=0, metadata={"help": "Drives every random choice of the training and test data."})
    num_scenes: int = field(default=10000, metadata={"help": "Training scenes (edits_per_scene triplets each)."})
    edits_per_scene: int = field(default=8, metadata={"help": "Rule-written triplets per training scene."})
    num_hard_negatives: int = field(default=1, metadata={"help": "Hard-negative captions per triplet."})
    epochs: int = field(default=8, metadata={"help": "Combiner training epochs."})
    batch_size: int = field(default=256, metadata={"help": "Triplets per training batch."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the Combiner."})
    temperature: float = field(default=0.2, metadata={"help": "Softmax temperature of the contrastive loss."})
    test_queries: int = field(default=1000, metadata={"help": "Queries of the world benchmark's test split."})

    def __post_init__(self) -> None:
        at_least = {"seed": 0, "num_scenes": 1, "edits_per_scene": 1, "num_hard_negatives": 0, "epochs": 1,
                    "batch_size": 1, "test_queries": 1}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        for name in ("learning_rate", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")

    def training_arguments(self, output_dir: Path, device: torch.device) -> ScotTrainingArguments:
        """The quickstart's `ScotTrainingArguments`: its own epochs, batch and learning rate, seeded, full batches."""
        return ScotTrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=self.batch_size,
            num_train_epochs=self.epochs,
            learning_rate=self.learning_rate,
            save_total_limit=1,
            seed=self.seed,
            data_seed=self.seed,
            dataloader_drop_last=True,
            use_cpu=device.type == "cpu",
        )


class StageTimer:
    """Wall seconds of each named stage of a run: `with stages("train"): ...`, then `stages.seconds`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 1)


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
    marker.unlink(missing_ok=True)  # the marker names the data on disk: never the old marker beside new data
    with replace_folder_atomic(folder / "data") as staging:
        dataset.save_to_disk(str(staging))
    write_json(marker, wanted)
    return load_from_disk(str(folder / "data"))


def run_quickstart(
    output: Path, settings: QuickstartSettings, device: torch.device, encoder_dtype: torch.dtype = torch.float32
) -> dict:
    """Run the quickstart into `output`; returns the results written to `output/results.json`."""
    started = time.monotonic()
    stages = StageTimer()
    check_model_output(output / "model")
    output.mkdir(parents=True, exist_ok=True)
    work = output / "work"
    with stages("triplets"):
        dataset = triplet_dataset(settings, work / "triplets")
    set_seed(settings.seed)
    with stages("load model"):
        model = ScotModel.from_encoder(clip_path(), dtype=encoder_dtype, temperature=settings.temperature).to(device)
    args = settings.training_arguments(work / "trainer", device)
    with stages("train"):
        training = fit_combiner(model, dataset, args, work / "cache", resume=True)
    with stages("evaluate"):
        evaluation = evaluate_world(
            model, settings.seed, num_queries=settings.test_queries, cache_dir=work / "embeddings"
        )
    data = f"built-in world, rules backend, seed {settings.seed}"
    with stages("save model"), replace_folder_atomic(output / "model") as staging:
        model.save_pretrained(
            staging,
            model_card={
                "eval_results": eval_results_from_report(evaluation),
                "training": training_card(args, len(dataset), data),
            },
        )
    results = {
        "seed": settings.seed,
        "train_triplets": len(dataset),
        "test_queries": evaluation["queries"],
        "gallery_size": evaluation["gallery_size"],
        "methods": evaluation["methods"],
        "settings_by_method": evaluation["settings"],
        "recall@1_by_edit_type": evaluation["recall@1_by_edit_type"],
        "training": training,
        "settings": asdict(settings),
        "seconds": round(time.monotonic() - started, 1),
        "stage_seconds": stages.seconds,
    }
    write_json(output / "results.json", results)
    return results


__all__ = ["QuickstartSettings", "StageTimer", "run_quickstart", "scot_home", "triplet_dataset"]
