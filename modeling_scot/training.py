"""The one training path: `ScotTrainingArguments` (TrainingArguments with SCOT's defaults), the model and data
arguments of `scot train`, and `fit_combiner`, which `scot train` and the quickstart both call."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames, SaveStrategy

from .checkpoints import last_complete_checkpoint
from .collators import CachedEmbeddingCollator
from .configuration_scot import IMAGE_POOLINGS, ScotConfig
from .datasets_io import open_dataset
from .embedding_cache import build_embedding_cache
from .evaluation.metrics import compute_text_retrieval_metrics
from .io_utils import replace_folder_atomic, write_json
from .modeling_scot import ScotModel
from .trainer import ScotTrainer

CHECKPOINTS = "checkpoints"
CACHE = "embedding-cache"
MODEL = "model"


def _config_default(name: str):
    return ScotConfig.__dataclass_fields__[name].default


@dataclass
class ScotTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults SCOT's Combiner trains well with on cached embeddings; every other
    field (and any of these) can be set as usual."""

    per_device_train_batch_size: int = field(
        default=256,
        metadata={"help": "Triplets per batch: each query is contrasted with the batch's other targets.", "aliases": ["--batch-size"]},
    )
    per_device_eval_batch_size: int = field(default=1024, metadata={"help": "Triplets per validation batch."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Passes over the triplets."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the Combiner."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up: a fraction of all steps (< 1) or a count."})
    optim: OptimizerNames | str = field(default="adamw_torch_fused", metadata={"help": "Optimizer."})
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=50, metadata={"help": "Log the loss every this many steps."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Experiment trackers (none)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the embedding collator reads the index columns."}
    )


@dataclass
class ScotTrainArguments:
    """What `scot train` trains: the encoder, the triplets, where to write, and the loss settings of the model."""

    encoder: str = field(
        metadata={"help": "Hub id or folder of the frozen dual encoder (CLIP, SigLIP, SigLIP 2, BLIP-2).", "aliases": ["--clip"]}
    )
    dataset: str = field(metadata={"help": "Hub id or folder of a triplet dataset (train, optional validation)."})
    output: str = field(metadata={"help": "Output folder: model/, checkpoints/, embedding-cache/."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in OUTPUT/checkpoints."})
    combiner_only: bool = field(
        default=False, metadata={"help": "Save only the Combiner; the config names the encoder to load it with."}
    )
    temperature: float = field(
        default=_config_default("temperature"), metadata={"help": "Softmax temperature of the contrastive loss."}
    )
    hard_negative_weight: float = field(
        default=_config_default("hard_negative_weight"), metadata={"help": "Weight of hard-negative captions (0 drops them)."}
    )
    caption_negative_weight: float = field(
        default=_config_default("caption_negative_weight"), metadata={"help": "Weight of the original caption (0 drops it)."}
    )
    image_pooling: str = field(
        default=_config_default("image_pooling"),
        metadata={
            "help": "V of a multi-vector encoder (BLIP-2): text_matched, the query vector closest to the "
            "modification, or mean, the mean of its query vectors.",
            "choices": list(IMAGE_POOLINGS),
        },
    )

    def config_overrides(self) -> dict:
        """The [`ScotConfig`] fields these arguments set."""
        names = ("temperature", "hard_negative_weight", "caption_negative_weight", "image_pooling")
        return {name: getattr(self, name) for name in names}


def load_triplets(source: str) -> DatasetDict:
    """A triplet dataset from a `save_to_disk` folder, a local folder of data files (the rows on disk now), or a
    Hub id."""
    try:
        loaded = open_dataset(source)
    except ValueError as err:
        raise ValueError(f"--dataset: {err}") from err
    if isinstance(loaded, Dataset):
        loaded = DatasetDict(train=loaded)
    if "train" not in loaded:
        raise ValueError(f"--dataset {source!r} has no 'train' split (splits: {list(loaded)})")
    return loaded


def _with_validation(args: ScotTrainingArguments) -> ScotTrainingArguments:
    """Evaluate every epoch and keep the best model by validation Recall@1, unless the caller chose otherwise."""
    if args.eval_strategy != "no":
        return args
    return dataclasses.replace(
        args, eval_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="recall@1"
    )


def fit_combiner(
    model: ScotModel,
    train: Dataset,
    args: ScotTrainingArguments,
    cache_dir: str | Path,
    *,
    validation: Dataset | None = None,
    resume: bool = False,
) -> dict:
    """Embed the triplets once (a resumable cache in `cache_dir`) and train the Combiner on the cached embeddings.

    With `validation`, every epoch reports text-retrieval Recall@K there and the best epoch is kept. With
    `resume`, training continues from the last complete checkpoint in `args.output_dir` (half-written ones are
    skipped). Returns the training loss,
    steps and validation metrics.
    """
    if args.remove_unused_columns:
        raise ValueError("remove_unused_columns must be False: the embedding collator reads the index columns")
    data = concatenate_datasets([train, validation]) if validation is not None else train
    cache, index = build_embedding_cache(model, data, cache_dir)
    train_index = index.select(range(len(train)))
    eval_index = index.select(range(len(train), len(index))) if validation is not None else None
    if eval_index is not None:
        args = _with_validation(args)
    trainer = ScotTrainer(
        model=model,
        args=args,
        train_dataset=train_index.to_list(),  # plain dict rows: Arrow row access costs more than a step
        eval_dataset=eval_index,
        data_collator=CachedEmbeddingCollator(cache),
        compute_metrics=compute_text_retrieval_metrics if eval_index is not None else None,
    )
    checkpoint = last_complete_checkpoint(args.output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {"train_loss": round(result.training_loss, 4), "steps": result.global_step}
    if eval_index is not None:
        metrics.update({k: round(v, 4) for k, v in trainer.evaluate().items() if isinstance(v, float)})
    return metrics


def training_card(args: ScotTrainingArguments, num_triplets: int, data: str, metrics: dict | None = None) -> dict:
    """The model card's training section."""
    return {
        "num_triplets": num_triplets,
        "epochs": args.num_train_epochs,
        "batch_size": args.per_device_train_batch_size,
        "learning_rate": args.learning_rate,
        "data": data,
        **{f"validation {k}": v for k, v in (metrics or {}).items() if k.startswith("eval_")},
    }


def check_model_output(folder: Path) -> None:
    """Refuse to replace `folder` unless it is absent or a saved SCOT model: a run replaces only what it wrote."""
    if not folder.exists():
        return
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "scot"
    except (OSError, ValueError, AttributeError):
        saved = False
    if not saved:
        raise ValueError(f"{folder} exists and is not a saved SCOT model; move it away or choose another --output")


def train_scot(
    train_args: ScotTrainArguments, args: ScotTrainingArguments, dtype: torch.dtype | None = None
) -> dict:
    """`scot train`: a Combiner around `train_args.encoder`, trained on `train_args.dataset` with checkpoints in
    `OUTPUT/checkpoints`, saved (the best epoch when there is a validation split) to `OUTPUT/model`; returns the
    metrics, also written to `OUTPUT/train_results.json`."""
    output = Path(train_args.output)
    check_model_output(output / MODEL)
    args = dataclasses.replace(args, output_dir=str(output / CHECKPOINTS))
    triplets = load_triplets(train_args.dataset)
    set_seed(args.seed)  # the Combiner's initial weights follow --seed
    model = ScotModel.from_encoder(train_args.encoder, dtype=dtype, **train_args.config_overrides())
    metrics = fit_combiner(
        model, triplets["train"], args, output / CACHE, validation=triplets.get("validation"), resume=train_args.resume
    )
    write_json(output / "train_results.json", metrics)
    source = train_args.dataset
    with replace_folder_atomic(output / MODEL) as staging:
        model.save_pretrained(
            staging,
            combiner_only=train_args.combiner_only,
            model_card={
                "datasets": [source] if not Path(source).exists() else [],
                "training": training_card(args, len(triplets["train"]), source, metrics),
            },
        )
    return metrics


__all__ = [
    "ScotTrainArguments",
    "check_model_output",
    "ScotTrainingArguments",
    "fit_combiner",
    "load_triplets",
    "train_scot",
    "training_card",
]
