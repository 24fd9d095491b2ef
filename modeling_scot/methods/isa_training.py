"""ISA's training on unlabelled images: global contrastive distillation plus a local alignment term.

The large image tower embeds every distinct training image once (held in memory; it is frozen). Each step the query
encoder turns a batch of images into K pseudo-word tokens each, and the frozen text tower encodes the training
prompt "a photo of $ $ $ $" (the prompt template up to its placeholder) with them. The loss is

- global contrastive distillation: the symmetric InfoNCE (at `IsaConfig.temperature`) between these text
  embeddings and the large tower's embeddings of the same images, the other images of the batch as negatives;
- plus `IsaConfig.local_weight` times the local alignment: the squared distance of each pseudo-word token to its
  nearest row of the frozen token-embedding table, over the table's mean squared row norm. It keeps the tokens
  among real word embeddings, where the text tower composes them with the modification's words.

Only the query encoder trains; the Trainer's checkpoints (pickle-free, see [`ScotTrainer`]) make the run
resumable, `args.seed` makes it repeatable. One process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from torch import nn
from transformers import set_seed

from ..checkpoints import last_complete_checkpoint
from ..embedding_cache import _image_keys
from ..encoders import DualEncoderAdapter
from ..encoding import encode_images
from ..io_utils import replace_folder_atomic, write_json
from ..processing_scot import ScotProcessor
from ..trainer import ScotTrainer
from ..training import ScotTrainingArguments
from .isa_model import IsaConfig, IsaModel, pseudo_sentence_embeds
from .keywords import PlaceholderBatch
from .tat_training import text_anchored_loss

CHECKPOINTS = "checkpoints"
MODEL = "model"


@dataclass
class IsaTrainingArguments(ScotTrainingArguments):
    """`ScotTrainingArguments` with ISA's defaults: 128 images a batch, lr 1e-4 for the query encoder, 20 epochs."""

    per_device_train_batch_size: int = field(
        default=128,
        metadata={"help": "Images per batch: each is contrasted with the batch's other images.",
                  "aliases": ["--batch-size"]},
    )  # fmt: skip
    num_train_epochs: float = field(default=20.0, metadata={"help": "Passes over the images."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the query encoder."})


def training_images(images: Dataset | Sequence) -> Dataset:
    """The distinct images to train on, as a Dataset with one `image` column: a dataset's `image` column (rows that
    share a `source_id` share their image, as in a triplet dataset), or a list of images."""
    if isinstance(images, Dataset):
        if "image" not in images.column_names:
            raise ValueError(f"the image dataset needs an `image` column; it has {images.column_names}")
        columns = images.select_columns(["source_id"]).to_dict() if "source_id" in images.column_names else {}
        first_row: dict[str, int] = {}
        for row, key in enumerate(_image_keys(images, columns)):
            first_row.setdefault(key, row)
        distinct = images.select(list(first_row.values())).select_columns(["image"])
    elif isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise ValueError(f"images must be a datasets.Dataset or a list of images, got {type(images).__name__}")
    else:
        distinct = Dataset.from_dict({"image": list(images)})
    if not len(distinct):
        raise ValueError("no image to train on")
    return distinct


def nearest_token_loss(tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Mean over the (..., token_dim) `tokens` of the squared distance to the nearest row of the (V, token_dim)
    token-embedding `table`, over the table's mean squared row norm (the table gets no gradient)."""
    flat, table = tokens.reshape(-1, tokens.shape[-1]).float(), table.detach().float()
    with torch.no_grad():
        nearest = torch.cdist(flat, table).argmin(dim=1)
    return (flat - table[nearest]).pow(2).sum(dim=1).mean() / table.pow(2).sum(dim=1).mean()


def isa_losses(
    query_encoder: nn.Module,
    adapter: DualEncoderAdapter,
    prompt: PlaceholderBatch,
    inputs: dict[str, torch.Tensor],
    temperature: float,
    local_weight: float,
) -> dict[str, torch.Tensor]:
    """ISA's loss on a batch (`pixel_values` and the large tower's `image_embeds`): `distillation`, `local` and
    their weighted sum `loss`. `prompt` is the training prompt as one row of K placeholders."""
    pixel_values, targets = inputs["pixel_values"], inputs["image_embeds"]
    rows = len(pixel_values)
    mask = None if prompt.attention_mask is None else prompt.attention_mask.expand(rows, -1)
    prompts = PlaceholderBatch(prompt.input_ids.expand(rows, -1), mask, prompt.replace.expand(rows, -1), [])
    queries, tokens = pseudo_sentence_embeds(query_encoder, adapter, prompts, pixel_values)
    distillation = text_anchored_loss(queries, targets.to(queries.device), temperature)
    local = nearest_token_loss(tokens, adapter.token_embedding.weight)
    return {"loss": distillation + local_weight * local, "distillation": distillation, "local": local}


@dataclass
class ImageDistillationCollator:
    """Batches of image rows: the processor's `pixel_values` and the large tower's cached `image_embeds`."""

    processor: ScotProcessor
    image_embeds: torch.Tensor

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pixels = self.processor(images=[feature["image"] for feature in features], return_tensors="pt")["pixel_values"]
        rows = torch.tensor([feature["row"] for feature in features], dtype=torch.long)
        return {"pixel_values": pixels, "image_embeds": self.image_embeds[rows]}


class IsaTrainer(ScotTrainer):
    """A `Trainer` of `isa`'s query encoder (the `model` it holds) with ISA's loss through `isa`'s frozen encoder."""

    def __init__(self, *args, isa: IsaModel, **kwargs):
        self.isa = isa
        self.prompt = isa.tokenizer([isa.training_pieces()])
        super().__init__(*args, model=isa.query_encoder, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.isa.config
        losses = isa_losses(
            model, self.isa.encoder.encoder_adapter, self.prompt, inputs, config.temperature, config.local_weight
        )
        return (losses["loss"], losses) if return_outputs else losses["loss"]


def check_isa_output(folder: Path) -> None:
    """Refuse to replace `folder` unless it is absent or a saved model of this method."""
    IsaConfig.check_output(folder)


def train_isa(
    model: IsaModel, images: Dataset | Sequence, args: IsaTrainingArguments, *, resume: bool = False
) -> dict:
    """Train `model`'s query encoder on unlabelled `images` (a dataset with an `image` column, or a list).

    Writes checkpoints to `args.output_dir/checkpoints` (continued from with `resume`), the trained model to
    `args.output_dir/model` and the metrics to `args.output_dir/train_results.json`; returns the metrics. The
    encoder stays frozen; the query encoder is left in eval mode.
    """
    if args.world_size > 1:
        raise ValueError(f"ISA trains in one process; this run has {args.world_size}")
    output = Path(args.output_dir)
    check_isa_output(output / MODEL)
    distinct = training_images(images)
    model.to(args.device)
    targets = encode_images(model.encoder, distinct["image"], progress=False)
    set_seed(args.seed)
    args = dataclasses.replace(args, output_dir=str(output / CHECKPOINTS))
    trainer = IsaTrainer(
        isa=model,
        args=args,
        train_dataset=distinct.add_column("row", list(range(len(distinct)))),
        data_collator=ImageDistillationCollator(model.encoder.processor, targets),
    )
    checkpoint = last_complete_checkpoint(args.output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model.query_encoder.eval()
    metrics = {"train_loss": round(result.training_loss, 6), "steps": result.global_step, "images": len(distinct)}
    with replace_folder_atomic(output / MODEL) as staging:
        model.save_pretrained(staging)
    write_json(output / "train_results.json", metrics)
    return metrics


__all__ = [
    "ImageDistillationCollator",
    "IsaTrainer",
    "IsaTrainingArguments",
    "check_isa_output",
    "isa_losses",
    "nearest_token_loss",
    "train_isa",
    "training_images",
]
