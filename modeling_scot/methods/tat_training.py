"""TAT's training: LoRA adapters on the image tower, a symmetric InfoNCE loss against the frozen text tower.

Each distinct image of an image-caption dataset (a triplet dataset's `image` and `caption` columns; rows sharing a
`source_id` share their image) is paired with its caption. The frozen text tower embeds every caption once (a
resumable cache); each step the tuned image tower embeds a batch of images, and the loss is the mean of the
image-to-caption and caption-to-image cross-entropies at TAT's temperature (images whose captions are the same
text are each other's positives). Checkpoints hold the adapters (peft's files) and pickle-free optimizer, scheduler
and RNG states (see [`ScotTrainer`]): `resume` continues the run, `args.seed` makes it repeatable. One process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import PeftModel
from safetensors import safe_open
from transformers import set_seed

from ..checkpoints import TRAINER_STATE
from ..embedding_cache import _image_keys
from ..encoders import adapter_for
from ..encoding import IMAGE_INPUT_NAMES
from ..io_utils import write_json
from ..modeling_scot import ScotModel
from ..processing_scot import ScotProcessor
from ..trainer import ScotTrainer
from ..training import ScotTrainingArguments
from .frozen_encoder import load_encoder
from .lincir_training import cached_caption_embeds
from .tat_model import ADAPTER_WEIGHTS_NAME, TatConfig, add_tat_adapters, check_tat_output, save_tat_adapters

CHECKPOINTS = "checkpoints"
CACHE = "caption-cache"
MODEL = "model"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TatTrainingArguments(ScotTrainingArguments):
    """`ScotTrainingArguments` with TAT's defaults: lr 1e-4 for the LoRA adapters, 5 epochs, 128 pairs per batch."""

    per_device_train_batch_size: int = field(
        default=128,
        metadata={"help": "Image-caption pairs per batch: each image is contrasted with the batch's other captions.",
                  "aliases": ["--batch-size"]},
    )  # fmt: skip
    num_train_epochs: float = field(default=5.0, metadata={"help": "Passes over the images."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the LoRA adapters."})


def image_caption_pairs(dataset: Dataset) -> tuple[Dataset, list[str]]:
    """One row per distinct image with a caption (`image`, `caption_index`), and the distinct captions."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"the image-caption data must be a datasets.Dataset, got {type(dataset).__name__}")
    missing = [name for name in ("image", "caption") if name not in dataset.column_names]
    if missing:
        raise ValueError(f"the image-caption dataset lacks column(s) {missing}; it has {dataset.column_names}")
    columns = dataset.select_columns([name for name in ("source_id", "caption") if name in dataset.column_names])
    values = columns.to_dict()
    first_row: dict[str, int] = {}
    for row, (key, text) in enumerate(zip(_image_keys(dataset, values), values["caption"])):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"the caption of row {row} is not a string: {text!r}")
        if text and text.strip():
            first_row.setdefault(key, row)
    if not first_row:
        raise ValueError("no image to train on: every caption is empty")
    rows = list(first_row.values())
    captions = list(dict.fromkeys(values["caption"][row].strip() for row in rows))
    position = {text: index for index, text in enumerate(captions)}
    caption_index = [-1] * len(dataset)  # -1: a row whose image another row stands for
    for row in rows:
        caption_index[row] = position[values["caption"][row].strip()]
    pairs = dataset.select_columns(["image"]).add_column("caption_index", caption_index).select(rows)
    return pairs, captions


@dataclass
class ImageCaptionCollator:
    """Batches of image-caption rows: the processor's image inputs, the cached caption embeddings and the caption
    indices (equal indices: the same caption)."""

    processor: ScotProcessor
    caption_embeds: torch.Tensor

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs = self.processor(images=[feature["image"] for feature in features], return_tensors="pt")
        batch = {name: value for name, value in inputs.items() if name in IMAGE_INPUT_NAMES}
        caption_ids = torch.tensor([feature["caption_index"] for feature in features], dtype=torch.long)
        return batch | {"caption_embeds": self.caption_embeds[caption_ids], "caption_ids": caption_ids}


def text_anchored_loss(
    image_embeds: torch.Tensor,
    caption_embeds: torch.Tensor,
    temperature: float,
    caption_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between (B, D) image and (B, D) caption embeddings (both L2-normalised): the mean of the
    image-to-caption and caption-to-image cross-entropies of the logits `image @ caption.T / temperature`, where
    row i's positives are the rows whose `caption_ids` equal its own (default: row i alone)."""
    if image_embeds.shape != caption_embeds.shape or image_embeds.ndim != 2:
        raise ValueError(f"image_embeds {tuple(image_embeds.shape)} and caption_embeds "
                         f"{tuple(caption_embeds.shape)} must both be (B, D)")  # fmt: skip
    if caption_ids is None:
        caption_ids = torch.arange(len(image_embeds), device=image_embeds.device)
    logits = image_embeds.float() @ caption_embeds.float().T / temperature
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric: the same targets serve both directions
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class TatTrainer(ScotTrainer):
    """A `Trainer` of a [`PeftModel`] (the `model` it holds) with TAT's loss on batches of
    [`ImageCaptionCollator`]."""

    def __init__(self, *args, model: PeftModel, temperature: float, **kwargs):
        super().__init__(*args, model=model, **kwargs)
        self.temperature = temperature
        self.image_tower = adapter_for(model.get_base_model(), "the tuned encoder")  # through the adapters

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        image_embeds = self.image_tower.image_embeds(**{k: v for k, v in inputs.items() if k in IMAGE_INPUT_NAMES})
        loss = text_anchored_loss(image_embeds, inputs["caption_embeds"], self.temperature, inputs["caption_ids"])
        return (loss, {"loss": loss}) if return_outputs else loss


def last_complete_adapter_checkpoint(folder: str | os.PathLike) -> str | None:
    """The highest-numbered `checkpoint-N` in `folder` whose trainer state parses and whose adapter weights have a
    readable header (the Trainer writes the state last), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered = [(int(m.group(1)), path) for path in folder.iterdir() if (m := _CHECKPOINT_NAME.match(path.name))]
    for _, path in sorted(numbered, reverse=True):
        try:
            json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
            with safe_open(str(path / ADAPTER_WEIGHTS_NAME), framework="pt"):
                return str(path)
        except Exception:  # a half-written checkpoint: missing or truncated files of several kinds
            continue
    return None


def train_tat(
    encoder_source: ScotModel | str | os.PathLike,
    dataset: Dataset,
    args: TatTrainingArguments,
    output_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    resume: bool = False,
    dtype: torch.dtype | None = None,
    **settings,
) -> tuple[PeftModel, dict]:
    """Tune the image tower of `encoder_source` (a Hub id, a folder, or a ScotModel whose encoder gets the adapters
    in place) on the image-caption pairs of `dataset` with TAT.

    Writes the caption embeddings to `cache_dir` (default `output_dir/caption-cache`), checkpoints to
    `output_dir/checkpoints` (continued from with `resume`), the adapter folder to `output_dir/model` (load it
    with [`load_tat_encoder`]) and the metrics to `output_dir/train_results.json`. `settings` are [`TatConfig`]
    fields (rank, alpha, dropout, target_modules, temperature). Returns the tuned model (eval mode) and the metrics.
    """
    settable = {f.name for f in dataclasses.fields(TatConfig)} - {"base_name_or_path", "base_signature"}
    unknown = sorted(set(settings) - settable)
    if unknown:
        raise ValueError(f"unknown TAT setting(s) {unknown}; choose from {sorted(settable)}")
    if args.world_size > 1:
        raise ValueError(f"TAT trains in one process; this run has {args.world_size}")
    output = Path(output_dir)
    check_tat_output(output / MODEL)
    pairs, captions = image_caption_pairs(dataset)
    set_seed(args.seed)
    frozen = load_encoder(encoder_source, dtype)
    if frozen.processor is None:
        raise ValueError("the encoder has no processor: load it from a Hub id or folder with processor files")
    caption_embeds = cached_caption_embeds(frozen, captions, Path(cache_dir) if cache_dir else output / CACHE)
    config = TatConfig(**settings).for_base(frozen.encoder, frozen.config.encoder_name_or_path)
    model = add_tat_adapters(frozen.encoder, config)
    args = dataclasses.replace(args, output_dir=str(output / CHECKPOINTS))
    trainer = TatTrainer(
        model=model,
        temperature=config.temperature,
        args=args,
        train_dataset=pairs,
        data_collator=ImageCaptionCollator(frozen.processor, caption_embeds),
    )
    checkpoint = last_complete_adapter_checkpoint(args.output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model.eval()
    metrics = {
        "train_loss": round(result.training_loss, 6),
        "steps": result.global_step,
        "images": len(pairs),
        "captions": len(captions),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    save_tat_adapters(model, config, output / MODEL, frozen.processor)
    write_json(output / "train_results.json", metrics)
    return model, metrics


__all__ = [
    "ImageCaptionCollator",
    "TatTrainer",
    "TatTrainingArguments",
    "image_caption_pairs",
    "last_complete_adapter_checkpoint",
    "text_anchored_loss",
    "train_tat",
]
