"""ScotTrainer: transformers' Trainer with SCOT's contrastive loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from transformers import Trainer

from .checkpoints import (
    SCALER_JSON,
    SCHEDULER_JSON,
    load_json_state,
    load_optimizer_state,
    load_rng_state,
    rng_state_name,
    save_json_state,
    save_optimizer_state,
    save_rng_state,
)
from .modeling_scot import ScotOutput


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather rows of `tensor` from every process, keeping gradients for the local rows.

    Returns the concatenated rows and the offset of this process's rows in it. Processes may
    hold different row counts (the last batch of an epoch).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    world_size, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = list(torch.distributed.nn.functional.all_gather(padded))
    gathered[rank] = torch.cat([tensor, padded[tensor.shape[0] :].detach()])
    rows = torch.cat([part[:n] for part, n in zip(gathered, counts)])
    return rows, sum(counts[:rank])


class ScotTrainer(Trainer):
    """A `Trainer` whose loss is SCOT's contrastive loss (see [`scot_contrastive_loss`]).

    Feed it batches from [`CachedEmbeddingCollator`] (fast: the frozen encoder ran once, ahead of
    training) or [`ScotDataCollator`] (raw images and texts), with `remove_unused_columns=False`.
    Across processes, each query is contrasted with the targets of the global batch. Checkpoints hold the
    optimizer, scheduler, RNG and scaler states as safetensors and JSON: resuming unpickles nothing.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs: ScotOutput = model(**inputs, return_loss=False)
        if outputs.target_embeds is None:
            raise ValueError("ScotTrainer batches need targets: target_embeds or target_input_ids (the modified captions)")
        targets, offset = gather_with_grad(outputs.target_embeds)
        labels = offset + torch.arange(outputs.query_embeds.shape[0], device=outputs.query_embeds.device)
        scot = self.accelerator.unwrap_model(model)
        outputs.loss = scot.contrastive_loss(
            outputs.query_embeds,
            targets,
            negative_embeds=outputs.negative_embeds,
            negative_mask=inputs.get("negative_mask"),
            caption_embeds=outputs.caption_embeds,
            labels=labels,
        )
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _scaler(self):
        return getattr(self.accelerator, "scaler", None)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self.args.should_save:
            folder = Path(output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            save_optimizer_state(self.optimizer.state_dict(), folder)
            save_json_state(self.lr_scheduler.state_dict(), folder / SCHEDULER_JSON)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        optimizer_state = load_optimizer_state(Path(checkpoint))
        scheduler_state = load_json_state(Path(checkpoint) / SCHEDULER_JSON)
        if optimizer_state is not None and scheduler_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
            self.lr_scheduler.load_state_dict(scheduler_state)

    def _save_scaler(self, output_dir: str) -> None:
        scaler = self._scaler()
        if scaler is not None and self.args.should_save:
            save_json_state(scaler.state_dict(), Path(output_dir) / SCALER_JSON)

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = self._scaler()
        state = load_json_state(Path(checkpoint) / SCALER_JSON) if checkpoint is not None else None
        if scaler is not None and state is not None:
            scaler.load_state_dict(state)

    def _save_rng_state(self, output_dir: str) -> None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        save_rng_state(Path(output_dir) / rng_state_name(self.args.process_index, self.args.world_size))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            load_rng_state(Path(checkpoint) / rng_state_name(self.args.process_index, self.args.world_size))


__all__ = ["ScotTrainer", "gather_with_grad"]
