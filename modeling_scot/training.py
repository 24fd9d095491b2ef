"""`scot train`: train a SCOT Combiner on a triplet dataset (a Hub id or a local folder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset, load_from_disk
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .collators import CachedEmbeddingCollator
from .embedding_cache import build_embedding_cache
from .evaluation.metrics import compute_text_retrieval_metrics
from .io_utils import write_json
from .modeling_scot import ScotModel
from .trainer import ScotTrainer

TRAINING_DEFAULTS = [
    "--per_device_train_batch_size", "256",
    "--per_device_eval_batch_size", "1024",
    "--num_train_epochs", "10",
    "--learning_rate", "1e-3",
    "--weight_decay", "0.01",
    "--lr_scheduler_type", "cosine",
    "--warmup_steps", "0.05",
    "--save_strategy", "epoch",
    "--save_total_limit", "2",
    "--logging_steps", "50",
    "--report_to", "none",
]
"""TrainingArguments defaults of `scot train`; any `--flag` the user passes after them wins."""


def load_triplets(source: str) -> DatasetDict:
    """A triplet dataset from a `save_to_disk` folder, a parquet folder with a card, or a Hub id."""
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--dataset {source!r} is a file; give a dataset folder or a Hub id")
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = load_from_disk(str(path))
        else:
            loaded = load_dataset(str(path))
    else:
        loaded = load_dataset(source)
    if isinstance(loaded, Dataset):
        loaded = DatasetDict(train=loaded)
    if "train" not in loaded:
        raise ValueError(f"--dataset {source!r} has no 'train' split (splits: {list(loaded)})")
    return loaded


def training_arguments(output: Path, extra: Sequence[str], batch_size: int | None, has_validation: bool) -> TrainingArguments:
    """TrainingArguments from `scot train`'s defaults, then the user's own `--flag value` pairs."""
    argv = ["--output_dir", str(output / "checkpoints"), *TRAINING_DEFAULTS]
    if batch_size is not None:
        argv += ["--per_device_train_batch_size", str(batch_size)]
    if has_validation:
        argv += ["--eval_strategy", "epoch", "--load_best_model_at_end", "True", "--metric_for_best_model", "recall@1"]
    argv += [*extra, "--remove_unused_columns", "False"]
    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(argv)
    return args


def train_scot(
    clip: str,
    dataset_source: str,
    output: Path,
    *,
    training_flags: Sequence[str] = (),
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    combiner_only: bool = False,
    resume: bool = False,
    **config_overrides,
) -> dict:
    """Train a Combiner around `clip` on `dataset_source`; save the best model to `output/model`.

    Returns the final metrics (training loss, and validation recall when a validation split exists),
    also written to `output/train_results.json`.
    """
    triplets = load_triplets(dataset_source)
    model = ScotModel.from_clip(clip, dtype=dtype, **config_overrides)
    splits = [triplets["train"]] + ([triplets["validation"]] if "validation" in triplets else [])
    cache, index = build_embedding_cache(model, concatenate_datasets(splits), output / "embedding-cache")
    num_train = len(triplets["train"])
    train_index = index.select(range(num_train))
    eval_index = index.select(range(num_train, len(index))) if len(splits) > 1 else None
    args = training_arguments(output, training_flags, batch_size, eval_index is not None)
    trainer = ScotTrainer(
        model=model,
        args=args,
        train_dataset=train_index.to_list(),  # plain dict rows: Arrow row access costs more than a step
        eval_dataset=eval_index,
        data_collator=CachedEmbeddingCollator(cache),
        compute_metrics=compute_text_retrieval_metrics if eval_index is not None else None,
    )
    checkpoint = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {"train_loss": round(result.training_loss, 4), "steps": result.global_step}
    if eval_index is not None:
        metrics.update({k: round(v, 4) for k, v in trainer.evaluate().items() if isinstance(v, float)})
    write_json(output / "train_results.json", metrics)
    model.save_pretrained(
        output / "model",
        combiner_only=combiner_only,
        model_card={
            "datasets": [dataset_source] if not Path(dataset_source).exists() else [],
            "training": {
                "num_triplets": len(triplets["train"]),
                "epochs": args.num_train_epochs,
                "batch_size": args.per_device_train_batch_size,
                "learning_rate": args.learning_rate,
                "data": dataset_source,
                **{f"validation {k}": v for k, v in metrics.items() if k.startswith("eval_")},
            },
        },
    )
    return metrics


__all__ = ["TRAINING_DEFAULTS", "load_triplets", "train_scot", "training_arguments"]
