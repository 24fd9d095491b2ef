"""LinCIR's language-only training: self-masking of caption keywords, on text alone.

The frozen text tower embeds every caption once (a resumable cache). Each step, phi maps a caption's embedding
plus noise (`noise_scale * u * n / sqrt(D)`, u ~ U(0, 1) per caption, n ~ N(0, I_D): the noise's norm is about
`noise_scale * u` times the embedding's) to one token; every keyword span of the
caption is replaced by that token, and the loss is the mean squared error between the masked caption's text
embedding and the caption's own (both L2-normalised). Only phi trains; the Trainer's checkpoints (pickle-free,
see [`ScotTrainer`]) make the run resumable, `args.seed` makes it repeatable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import SchedulerType
from transformers.training_args import SaveStrategy

from ..checkpoints import last_complete_checkpoint
from ..embedding_cache import chunked_encode, encoder_fingerprint
from ..encoders import DualEncoderAdapter
from ..encoding import encode_texts
from ..io_utils import replace_folder_atomic, write_json
from ..modeling_scot import ScotModel
from ..trainer import ScotTrainer
from .keywords import PlaceholderTokenizer, keyword_spans, masked_segments
from .lincir_model import LincirConfig, LincirModel

CAPTION_COLUMNS = ("caption", "modified_caption")
CHECKPOINTS = "checkpoints"
CACHE = "caption-cache"
MODEL = "model"
CACHE_CHUNK = 16384


@dataclass
class LincirTrainingArguments(TrainingArguments):
    """`TrainingArguments` with LinCIR's optimiser settings (AdamW, lr 1e-4, weight decay 0.01, constant rate)."""

    per_device_train_batch_size: int = field(default=256, metadata={"help": "Captions per batch."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of phi."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: SchedulerType | str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    optim: str = field(default="adamw_torch", metadata={"help": "Optimizer."})
    save_strategy: SaveStrategy | str = field(default="steps", metadata={"help": "When to save a checkpoint."})
    save_steps: float = field(default=500, metadata={"help": "Save a checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=50, metadata={"help": "Log the loss every this many steps."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Experiment trackers (none)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads the rows."}
    )


def caption_texts(captions: Dataset | Sequence[str]) -> list[str]:
    """The distinct non-empty captions, in first-seen order, of a list or of a triplet dataset's `caption` and
    `modified_caption` columns."""
    if isinstance(captions, Dataset):
        columns = [name for name in CAPTION_COLUMNS if name in captions.column_names]
        if not columns:
            wanted = " or ".join(CAPTION_COLUMNS)
            raise ValueError(f"the caption dataset needs a column {wanted}; it has {captions.column_names}")
        values = captions.select_columns(columns).to_dict()
        texts = [text for name in columns for text in values[name]]
    elif isinstance(captions, str) or not isinstance(captions, Sequence):
        raise ValueError(f"captions must be a datasets.Dataset or a list of strings, got {type(captions).__name__}")
    else:
        texts = list(captions)
    for row, text in enumerate(texts):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"caption {row} is not a string: {text!r}")
    distinct = list(dict.fromkeys(text.strip() for text in texts if text and text.strip()))
    if not distinct:
        raise ValueError("no caption to train on: every caption is empty")
    return distinct


def cached_caption_embeds(
    encoder: ScotModel, captions: list[str], cache_dir: Path, batch_size: int = 256
) -> torch.Tensor:
    """(N, D) text embeddings of `captions`, computed once into `cache_dir` (keyed by encoder, processor and texts)."""
    key = hashlib.blake2b(digest_size=16)
    for part in (encoder_fingerprint(encoder), encoder.processor.to_json_string(), json.dumps(captions)):
        key.update(part.encode())

    def encode(rows: range) -> torch.Tensor:
        return encode_texts(encoder, captions[rows.start : rows.stop], batch_size=batch_size, progress=False)

    return chunked_encode(cache_dir / key.hexdigest(), "captions", len(captions), CACHE_CHUNK, encode, progress=True)


@dataclass
class MaskedCaptionCollator:
    """Batches of caption rows: cached caption embeddings and the token ids of the masked captions.

    A caption without a keyword span, or whose spans all lie past the length limit, becomes the prompt's text up
    to the placeholder ("a photo of $"), so every row carries at least one placeholder.
    """

    captions: Sequence[str]
    caption_embeds: torch.Tensor
    placeholders: PlaceholderTokenizer
    fallback: list[str]
    lexicon: Collection[str] | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = [feature["row"] for feature in features]
        pieces = []
        for row in rows:
            spans = keyword_spans(self.captions[row], self.lexicon)
            pieces.append(masked_segments(self.captions[row], spans) if spans else self.fallback)
        batch = self.placeholders(pieces)
        empty = (batch.counts() == 0).nonzero().flatten().tolist()
        if empty:
            batch = self.placeholders([self.fallback if row in empty else part for row, part in enumerate(pieces)])
        inputs = {"caption_embeds": self.caption_embeds[rows], "input_ids": batch.input_ids, "replace": batch.replace}
        if batch.attention_mask is not None:
            inputs["attention_mask"] = batch.attention_mask
        return inputs


def self_masking_loss(phi: nn.Module, adapter: DualEncoderAdapter, inputs: dict, noise_scale: float) -> torch.Tensor:
    """MSE between the text embedding of each masked caption, its placeholders carrying phi(caption embedding +
    noise), and the caption's own embedding."""
    targets = inputs["caption_embeds"].float()
    scale = noise_scale / targets.shape[1] ** 0.5 * torch.rand(targets.shape[0], 1, device=targets.device)
    tokens = phi(targets + scale * torch.randn_like(targets))
    replace = inputs["replace"]
    tokens = tokens.repeat_interleave(replace.sum(dim=1), dim=0).to(adapter.token_embedding.weight.dtype)
    masked = adapter.text_embeds_with_tokens(inputs["input_ids"], inputs.get("attention_mask"), replace, tokens)
    return F.mse_loss(masked, targets)


class LincirTrainer(ScotTrainer):
    """A `Trainer` of phi (the `model` it holds) with LinCIR's self-masking loss through `lincir`'s frozen encoder."""

    def __init__(self, *args, lincir: LincirModel, **kwargs):
        self.lincir = lincir
        super().__init__(*args, model=lincir.phi, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self_masking_loss(model, self.lincir.encoder.encoder_adapter, inputs, self.lincir.config.noise_scale)
        return (loss, {"loss": loss}) if return_outputs else loss


def check_lincir_output(folder: Path) -> None:
    """Refuse to replace `folder` unless it is absent or a saved model of this method."""
    LincirConfig.check_output(folder)


def train_lincir(
    encoder_source: ScotModel | str | os.PathLike,
    captions: Dataset | Sequence[str],
    args: LincirTrainingArguments,
    output_dir: str | os.PathLike,
    *,
    lexicon: Collection[str] | None = None,
    resume: bool = False,
    dtype: torch.dtype | None = None,
    **settings,
) -> tuple[LincirModel, dict]:
    """Train phi for the frozen encoder `encoder_source` on `captions` (a list, or a triplet dataset's captions).

    Writes `output_dir/caption-cache` (the caption embeddings), `output_dir/checkpoints` (resumed from with
    `resume`) and the trained model to `output_dir/model`, and its metrics to `output_dir/train_results.json`.
    `lexicon` gives the keyword words (the built-in world's `WORLD_LEXICON`); `settings` are [`LincirConfig`]
    fields. Returns the model (phi in eval mode) and the metrics.
    """
    output = Path(output_dir)
    check_lincir_output(output / MODEL)
    texts = caption_texts(captions)
    set_seed(args.seed)  # phi's initial weights follow the seed
    model = LincirModel.from_encoder(encoder_source, dtype=dtype, **settings).to(args.device)
    embeds = cached_caption_embeds(model.encoder, texts, output / CACHE)
    args = dataclasses.replace(args, output_dir=str(output / CHECKPOINTS))
    before, _ = model.config.prompt_template.split(model.config.placeholder)
    collator = MaskedCaptionCollator(texts, embeds, model.tokenizer, [before, ""], lexicon)
    trainer = LincirTrainer(
        lincir=model, args=args, train_dataset=[{"row": row} for row in range(len(texts))], data_collator=collator
    )
    checkpoint = last_complete_checkpoint(args.output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model.phi.eval()
    metrics = {"train_loss": round(result.training_loss, 6), "steps": result.global_step, "captions": len(texts)}
    with replace_folder_atomic(output / MODEL) as staging:
        model.save_pretrained(staging)
    write_json(output / "train_results.json", metrics)
    return model, metrics


__all__ = [
    "LincirTrainer",
    "LincirTrainingArguments",
    "MaskedCaptionCollator",
    "caption_texts",
    "cached_caption_embeds",
    "check_lincir_output",
    "self_masking_loss",
    "train_lincir",
]
