"""Train the small CLIP of the built-in world from scratch and write it as a shippable folder.

    python -m hub.train_world_clip --output modeling_scot/assets/world-clip --seed 0 --steps 3000

Images are world scenes rendered at 64 px, texts their paraphrased captions. Every batch pairs
each scene with a hard negative of itself: a one-attribute-off variant or, with
`--binding-negative-fraction`, sometimes a binding variant in which two objects trade an attribute or
their cells (the same words, bound to other objects), so the contrastive loss teaches which attribute
belongs to which object and where it is. The run is seeded; it saves its state every
few minutes (safetensors weights and optimizer moments, JSON counters) and `--resume` continues
an interrupted run. The output folder holds the CLIPModel (safetensors), its processor, the loss
curve and a card (README.md) with the command, the held-out retrieval scores and the license.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import (
    BatchEncoding,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from modeling_scot import ScotProcessor
from modeling_scot.triplets import CaptionRequest, RulesBackend
from modeling_scot.triplets.rules import training_edit
from modeling_scot.world.split import is_test_scene
from modeling_scot.word_tokenizer import build_word_level_tokenizer
from modeling_scot.world import (
    binding_variants,
    caption,
    one_off_variants,
    partial_caption,
    render_scene,
    sample_scene,
    states_truly,
    world_vocabulary,
)
from modeling_scot.world.scene import derived_rng, scene_id

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
STATE_DIR = ".train-state"
SAVE_EVERY_S = 120.0
"""Seconds between two saves of the training state."""
BINDING_CANDIDATES = 5
EDIT_OBJECTIVES = {
    "paraphrase": "a text-only contrastive loss pulls two rule-written phrasings of the same edit together "
    "and pushes them from the batch's other edits",
    "direction": "a text-only contrastive loss aligns each rule-written modification text with the direction "
    "from its caption to the modified caption (this hands the training-free sum and Slerp baselines the "
    "composition itself)",
}


@dataclass
class Settings:
    """Everything that determines the trained model; recorded in the card."""

    seed: int = 0
    steps: int = 3000
    pairs_per_batch: int = 128
    pool_pairs: int = 30000
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 192
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 3
    heads: int = 4
    projection_dim: int = 128
    max_text_length: int = 48
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    binding_negative_fraction: float = 0.0
    partial_caption_fraction: float = 0.0
    bf16: bool = True
    eval_scenes: int = 1000
    edit_objective: str = "paraphrase"
    edit_pairs_per_batch: int = 96
    edit_loss_weight: float = 0.5
    edit_logit_scale: float = 20.0


class WorldRun(Protocol):
    """The settings the shared world-training helpers read; every world trainer's `Settings` has them."""

    seed: int
    steps: int
    pairs_per_batch: int
    pool_pairs: int
    image_size: int
    binding_negative_fraction: float
    learning_rate: float
    warmup_steps: int
    eval_scenes: int
    edit_loss_weight: float


@dataclass(frozen=True)
class WorldRetriever:
    """How a trained dual encoder scores world images against texts: `image_vectors` of pixel values,
    `text_vectors` of processor tokens, and `similarity` (images, texts) of the two."""

    image_vectors: Callable[[torch.Tensor], torch.Tensor]
    text_vectors: Callable[[BatchEncoding], torch.Tensor]
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def clip_config(settings: Settings, vocab_size: int) -> CLIPConfig:
    """The world CLIP architecture (about 2.5M parameters with the default widths)."""
    return CLIPConfig(
        projection_dim=settings.projection_dim,
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=settings.text_width,
            intermediate_size=4 * settings.text_width,
            num_hidden_layers=settings.text_layers,
            num_attention_heads=settings.heads,
            max_position_embeddings=settings.max_text_length,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=vocab_size - 1,
        ),
        vision_config=dict(
            image_size=settings.image_size,
            patch_size=settings.patch_size,
            hidden_size=settings.vision_width,
            intermediate_size=4 * settings.vision_width,
            num_hidden_layers=settings.vision_layers,
            num_attention_heads=settings.heads,
        ),
    )


def world_tokenizer(max_text_length: int) -> PreTrainedTokenizerFast:
    """The word-level tokenizer over the closed world vocabulary (`<bos> ... <eos>`, padded with id 0)."""
    return build_word_level_tokenizer(world_vocabulary(), model_max_length=max_text_length)


def build_processor(settings: Settings) -> ScotProcessor:
    size = settings.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    return ScotProcessor(image_processor=image_processor, tokenizer=world_tokenizer(settings.max_text_length))


def clip_retriever(model: CLIPModel) -> WorldRetriever:
    """CLIP's normalised pooled embeddings, scored by cosine similarity."""
    return WorldRetriever(
        image_vectors=lambda pixels: F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1),
        text_vectors=lambda tokens: F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1),
        similarity=lambda images, texts: images @ texts.T,
    )


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised float (B, 3, H, W), as the processor does for 64 px inputs."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def rendered_pixels(scenes: list, settings: WorldRun) -> torch.Tensor:
    """`scenes` rendered at `settings.image_size` and CLIP-normalised, (N, 3, H, W)."""
    return normalise(torch.from_numpy(np.stack([np.asarray(render_scene(s, settings.image_size)) for s in scenes])))


def render_pool(settings: WorldRun) -> tuple[list, torch.Tensor]:
    """`pool_pairs` (scene, hard negative) pairs, rendered once: scenes[2i], scenes[2i+1] form a pair. The
    negative is a binding variant with probability `binding_negative_fraction` (where the scene has one),
    else a one-off variant."""
    rng = random.Random(settings.seed)
    scenes = []
    for _ in range(settings.pool_pairs):
        scene = sample_scene(rng)
        wants_binding = settings.binding_negative_fraction > 0 and rng.random() < settings.binding_negative_fraction
        traded = binding_variants(scene) if wants_binding else []
        scenes += [scene, rng.choice(traded or one_off_variants(scene))]
    pixels = np.empty((len(scenes), settings.image_size, settings.image_size, 3), dtype=np.uint8)
    for index, scene in enumerate(tqdm(scenes, desc="rendering scenes", unit="img")):
        pixels[index] = np.asarray(render_scene(scene, image_size=settings.image_size))
    return scenes, torch.from_numpy(pixels)


def batch_rng(settings: WorldRun, step: int) -> random.Random:
    """The random numbers of training step `step`: the same batches for every world trainer of one seed."""
    return derived_rng("world-clip-batch", settings.seed, step)


def batch_rows(rng: random.Random, settings: WorldRun) -> list[int]:
    """`pairs_per_batch` random pool pairs as pool rows, each scene followed by its hard negative."""
    pairs = rng.sample(range(settings.pool_pairs), settings.pairs_per_batch)
    return [index for pair in pairs for index in (2 * pair, 2 * pair + 1)]


def edit_texts(scenes: list, rng: random.Random, count: int, backend: RulesBackend) -> list[str]:
    """`count` rule-written (caption, modification, modified caption) triples from training scenes and
    training changes only, flattened as captions + modifications + modified captions."""
    triples = []
    while len(triples) < count:
        scene = scenes[rng.randrange(len(scenes))]
        request = CaptionRequest(scene_id(scene), None, caption(scene, rng), rng.randrange(1 << 30))
        record = backend.generate([request])[0]
        if record is not None:
            triples.append((record.caption, record.modification, record.modified_caption))
    return [text for column in zip(*triples) for text in column]


def batch_captions(scenes: list, rows: list[int], rng: random.Random, partial_fraction: float) -> tuple[list[str], torch.Tensor]:
    """A caption for each row's scene, partial (see [`partial_caption`]) with probability `partial_fraction`,
    and the (texts, images) bool matrix of which captions state only true things of which batch scenes. A
    full caption's only positive is its own scene; with `partial_fraction` 0 no extra random numbers are drawn."""
    texts = []
    positives = torch.eye(len(rows), dtype=torch.bool)
    for row, index in enumerate(rows):
        if partial_fraction > 0 and rng.random() < partial_fraction:
            text, statement = partial_caption(scenes[index], rng)
            positives[row] = torch.tensor([states_truly(statement, scenes[other]) for other in rows])
        else:
            text = caption(scenes[index], rng)
        texts.append(text)
    return texts, positives


def multi_positive_clip_loss(logits_per_text: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """The symmetric CLIP loss with several positives: cross-entropy against the uniform distribution over each
    text's true images, and over each image's true texts (the plain CLIP loss when `positives` is the identity)."""
    logits = logits_per_text.float()
    targets = positives.float()
    text_to_image = -(F.log_softmax(logits, dim=1) * targets / targets.sum(1, keepdim=True)).sum(1).mean()
    image_to_text = -(F.log_softmax(logits.T, dim=1) * targets.T / targets.sum(0)[:, None]).sum(1).mean()
    return (text_to_image + image_to_text) / 2


def paraphrase_texts(scenes: list, rng: random.Random, count: int) -> list[str]:
    """`count` training edits of training scenes, each phrased twice: first phrasings, then second ones."""
    pairs = []
    while len(pairs) < count:
        scene = scenes[rng.randrange(len(scenes))]
        found = None if is_test_scene(scene) else training_edit(scene, rng)
        if found is not None:
            pairs.append((found[0].describe(scene, rng), found[0].describe(scene, rng)))
    return [text for column in zip(*pairs) for text in column]


def paraphrase_loss(text_features: torch.Tensor, count: int, scale: float) -> torch.Tensor:
    """InfoNCE between two phrasings of the same edit (the text features of `paraphrase_texts`, normalised
    here), against the batch's other edits, both ways: the text tower learns what edit wording means (which
    change, to which object) without being told how an edit moves a caption's embedding."""
    embeds = F.normalize(text_features.float(), dim=-1)
    first, second = embeds.split(count)
    logits = scale * first @ second.T
    labels = torch.arange(count)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def edit_direction_loss(text_features: torch.Tensor, count: int, scale: float) -> torch.Tensor:
    """InfoNCE between each modification's embedding and the direction from its caption to its modified
    caption (normalised T_u - T_c), against the other directions of the batch, both ways; `text_features`
    are those of `edit_texts`, normalised here."""
    embeds = F.normalize(text_features.float(), dim=-1)
    captions, modifications, targets = embeds.split(count)
    logits = scale * modifications @ F.normalize(targets - captions, dim=-1).T
    labels = torch.arange(count)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def lr_at(step: int, total: int, settings: WorldRun) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, total - settings.warmup_steps))
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


@torch.inference_mode()
def held_out_recall(
    retriever: WorldRetriever, processor: ScotProcessor, settings: WorldRun, seen: set
) -> dict[str, float]:
    """Image->text and text->image Recall@1 (percent) on distinct scenes outside the training pool
    (`seen`), with canonical captions, of a model in eval mode."""
    rng = derived_rng("world-clip-eval", settings.seed)
    scenes: dict = {}
    while len(scenes) < settings.eval_scenes:
        scene = sample_scene(rng)
        if scene not in seen:
            scenes.setdefault(scene)
    scenes = list(scenes)
    pixels = rendered_pixels(scenes, settings)
    tokens = processor(text=[caption(s) for s in scenes], return_tensors="pt")
    similarity = retriever.similarity(retriever.image_vectors(pixels), retriever.text_vectors(tokens))
    truth = torch.arange(len(scenes))
    return {
        "image_to_text_recall@1": round(100 * (similarity.argmax(1) == truth).float().mean().item(), 2),
        "text_to_image_recall@1": round(100 * (similarity.argmax(0) == truth).float().mean().item(), 2),
        "binding_text_to_image_recall@1": binding_recall(retriever, processor, settings, scenes, rng),
        "scenes": len(scenes),
    }


def binding_recall(
    retriever: WorldRetriever, processor: ScotProcessor, settings: WorldRun, scenes: list, rng: random.Random
) -> float:
    """Text->image Recall@1 (percent) of each scene's caption among the scene and up to
    `BINDING_CANDIDATES - 1` of its binding variants, over the scenes that have some."""
    groups = []
    for scene in scenes:
        variants = binding_variants(scene)
        if variants:
            groups.append([scene, *rng.sample(variants, min(len(variants), BINDING_CANDIDATES - 1))])
    candidates = [scene for group in groups for scene in group]
    pixels = rendered_pixels(candidates, settings)
    images = torch.cat([retriever.image_vectors(chunk) for chunk in pixels.split(512)])
    images = images.split([len(group) for group in groups])
    tokens = processor(text=[caption(group[0]) for group in groups], return_tensors="pt")
    texts = retriever.text_vectors(tokens)
    hits = sum(
        int(retriever.similarity(group_images, text[None])[:, 0].argmax().item() == 0)
        for group_images, text in zip(images, texts)
    )
    return round(100 * hits / max(1, len(groups)), 2)


def save_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, counters: dict) -> None:
    """Weights and AdamW moments as safetensors, counters as JSON; each written to a temp file then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    moments = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if key != "step":
                    moments[f"{names[id(param)]}::{key}"] = value.contiguous()
    counters = {**counters, "adam_step": int(next(iter(optimizer.state.values()), {}).get("step", 0))}
    for name, tensors in (("model.safetensors", model.state_dict()), ("optimizer.safetensors", moments)):
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / (name + ".tmp")))
        os.replace(folder / (name + ".tmp"), folder / name)
    replace_file(folder / "counters.json", json.dumps(counters))


def load_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what `save_state` wrote into `model` and `optimizer`; returns the counters."""
    model.load_state_dict(load_file(folder / "model.safetensors"))
    counters = json.loads((folder / "counters.json").read_text())
    moments = load_file(folder / "optimizer.safetensors")
    for name, param in model.named_parameters():
        if f"{name}::exp_avg" in moments:
            optimizer.state[param] = {
                "step": torch.tensor(float(counters["adam_step"])),
                "exp_avg": moments[f"{name}::exp_avg"],
                "exp_avg_sq": moments[f"{name}::exp_avg_sq"],
            }
    return counters


def hard_negatives_text(binding_negative_fraction: float) -> str:
    """The card's description of the hard negative each batch scene comes with."""
    negatives = "a variant with one attribute of one object changed"
    if binding_negative_fraction > 0:
        negatives = (
            f"with probability {binding_negative_fraction} (where the scene has two objects) a binding "
            "variant, in which two objects trade one attribute or their cells so that the caption's words stay "
            f"the same but belong to other objects, else {negatives}"
        )
    return negatives


def loss_table(curve: list) -> tuple[int, str]:
    """The stride that keeps about 20 of the logged steps, and those steps as markdown table rows."""
    stride = max(1, len(curve) // 20)
    rows = "\n".join(f"| {row['step']} | {row['loss']:.4f} | {row['edit_loss']:.4f} |" for row in curve[::stride])
    return stride, rows


def command_line(module: str) -> str:
    """The command of this run as the card records it (`--resume` left out)."""
    return f"python -m {module} " + shlex.join(arg for arg in sys.argv[1:] if arg != "--resume")


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file and a rename, so a reader never sees half of it."""
    path.with_name(path.name + ".tmp").write_text(text)
    os.replace(path.with_name(path.name + ".tmp"), path)


def save_folder(output: Path, model: PreTrainedModel, processor: ScotProcessor, curve: list) -> None:
    """The shippable folder: the model (safetensors), its processor and the loss curve."""
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "loss_curve.json").write_text(json.dumps(curve))


def write_card(
    output: Path, settings: Settings, command: str, metrics: dict, curve: list, parameters: int, elapsed: float
) -> None:
    stride, losses = loss_table(curve)
    negatives = hard_negatives_text(settings.binding_negative_fraction)
    partial = ""
    if settings.partial_caption_fraction > 0:
        partial = (
            f", and with probability {settings.partial_caption_fraction} as loose as web alt text (some of the "
            "objects, each with its shape and some of its details), such a caption counting as a positive of "
            "every scene of the batch it describes truly"
        )
    text = f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: zero-shot-image-classification
tags: [clip, synthetic, modeling-scot-world]
---

# World CLIP

A small `CLIPModel` ({parameters / 1e6:.2f}M parameters, {settings.image_size} px images, patch
{settings.patch_size}, vision {settings.vision_layers} x {settings.vision_width}, text {settings.text_layers} x
{settings.text_width}, word-level tokenizer over the closed world vocabulary) trained from scratch on the
procedurally rendered scenes and captions of `modeling_scot`'s built-in world. It lets the SCOT pipeline run
end to end offline; it knows nothing outside that world.

## Training

Command (seed {settings.seed}):

```
{command}
```

Settings: `{json.dumps(asdict(settings))}`

Each batch holds {settings.pairs_per_batch} rendered scenes and, for each, a hard negative: {negatives};
captions are freshly paraphrased{partial}; symmetric CLIP loss, AdamW,
cosine schedule, {'bf16 autocast' if settings.bf16 else 'fp32'} on CPU. Like a web-trained CLIP, whose text tower has read plenty of
instructions, this one also learns what edit wording means: {EDIT_OBJECTIVES[settings.edit_objective]}
(weight {settings.edit_loss_weight}, {settings.edit_pairs_per_batch} edits per batch). Those texts come
from training scenes and training changes only (the benchmark's held-out changes and test scenes never
occur). Steps: {settings.steps}; training time: {elapsed / 60:.1f} minutes on
{os.cpu_count()} CPU cores.

## Held-out retrieval ({metrics['scenes']} scenes outside the training pool, canonical captions)

| direction | Recall@1 (%) |
|---|---|
| image -> text | {metrics['image_to_text_recall@1']} |
| text -> image | {metrics['text_to_image_recall@1']} |
| text -> image among the scene and {BINDING_CANDIDATES - 1} of its binding variants | {metrics['binding_text_to_image_recall@1']} |

## Loss curve (every {stride}th logged step; all steps in `loss_curve.json`)

| step | CLIP loss | edit-direction loss |
|---|---|---|
{losses}

## License

Apache-2.0, like the rest of `modeling_scot`.
"""
    replace_file(output / "README.md", text)


def run_steps(
    trained: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    settings: WorldRun,
    state_dir: Path,
    resume: bool,
    losses_at: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    after_step: Callable[[], None],
    description: str,
) -> dict:
    """Train `trained` up to `settings.steps`, continuing the state in `state_dir` when `resume` finds one. Each
    step sets the `lr_at` learning rate, takes `losses_at(step)` (contrastive loss, edit loss), steps the
    optimizer on their sum weighted by `edit_loss_weight` with gradients clipped to norm 1, then calls
    `after_step()`. The state is saved every `SAVE_EVERY_S` seconds and at the end. Returns the counters:
    steps done, training seconds and the loss curve."""
    counters = {"step": 0, "elapsed": 0.0, "curve": []}
    if resume and (state_dir / "counters.json").is_file():
        counters = load_state(state_dir, trained, optimizer)
        print(f"resuming at step {counters['step']}", file=sys.stderr)
    trained.train()
    bar = tqdm(desc=description, unit="step", initial=counters["step"])
    last_save = time.monotonic()
    while counters["step"] < settings.steps:
        started = time.monotonic()
        step = counters["step"]
        lr = lr_at(step, settings.steps, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        contrastive_loss, edit_loss = losses_at(step)
        loss = contrastive_loss + settings.edit_loss_weight * edit_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        after_step()
        counters["step"] += 1
        counters["elapsed"] += time.monotonic() - started
        losses = {"loss": round(contrastive_loss.item(), 5), "edit_loss": round(edit_loss.item(), 5)}
        counters["curve"].append({"step": counters["step"], **losses})
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss']:.3f}", edit=f"{losses['edit_loss']:.3f}", lr=f"{lr:.2e}")
        if time.monotonic() - last_save > SAVE_EVERY_S:
            save_state(state_dir, trained, optimizer, counters)
            last_save = time.monotonic()
    bar.close()
    save_state(state_dir, trained, optimizer, counters)
    return counters


def clip_losses(
    step: int,
    model: CLIPModel,
    processor: ScotProcessor,
    scenes: list,
    pixels: torch.Tensor,
    settings: Settings,
    backend: RulesBackend,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLIP loss and the edit loss of training step `step` (batch drawn from the rendered pool)."""
    rng = batch_rng(settings, step)
    rows = batch_rows(rng, settings)
    captions, positives = batch_captions(scenes, rows, rng, settings.partial_caption_fraction)
    tokens = processor(text=captions, return_tensors="pt")
    if settings.edit_objective == "paraphrase":
        texts, edit_loss_fn = paraphrase_texts(scenes, rng, settings.edit_pairs_per_batch), paraphrase_loss
    else:
        texts, edit_loss_fn = edit_texts(scenes, rng, settings.edit_pairs_per_batch, backend), edit_direction_loss
    edit_tokens = processor(text=texts, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
        # Without partial captions keep transformers' own CLIP loss, so earlier cards' commands reproduce exactly.
        plain = settings.partial_caption_fraction == 0
        forward = model(pixel_values=normalise(pixels[rows]), return_loss=plain, **tokens)
        clip_loss = forward.loss if plain else multi_positive_clip_loss(forward.logits_per_text, positives)
        edit_features = model.get_text_features(**edit_tokens).pooler_output
        edit_loss = edit_loss_fn(edit_features, settings.edit_pairs_per_batch, settings.edit_logit_scale)
    return clip_loss, edit_loss


def clamp_logit_scale(model: CLIPModel) -> None:
    """Keep CLIP's logit scale within [1, 100]."""
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))


def train(settings: Settings, output: Path, resume: bool) -> dict:
    torch.manual_seed(settings.seed)
    processor = build_processor(settings)
    model = CLIPModel(clip_config(settings, len(processor.tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scenes, pixels = render_pool(settings)
    backend = RulesBackend(seed=settings.seed, num_hard_negatives=0)
    losses_at = partial(
        clip_losses, model=model, processor=processor, scenes=scenes, pixels=pixels, settings=settings, backend=backend
    )
    after_step = partial(clamp_logit_scale, model)
    description = "training world CLIP"
    counters = run_steps(model, optimizer, settings, output / STATE_DIR, resume, losses_at, after_step, description)
    model.eval()
    metrics = held_out_recall(clip_retriever(model), processor, settings, set(scenes))
    save_folder(output, model, processor, counters["curve"])
    command = command_line("hub.train_world_clip")
    parameters = sum(p.numel() for p in model.parameters())
    write_card(output, settings, command, metrics, counters["curve"], parameters, counters["elapsed"])
    return metrics


def add_settings_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """One `--field-name` option per field of the settings dataclass `defaults` (booleans as `--x/--no-x`)."""
    for field, default in asdict(defaults).items():
        kind = type(default)
        if kind is bool:
            parser.add_argument(f"--{field.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=default)


def settings_from(args: argparse.Namespace, settings_class: type) -> Any:
    """The `settings_class` instance the parsed `args` ask for."""
    return settings_class(**{field: getattr(args, field) for field in asdict(settings_class())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("modeling_scot/assets/world-clip"))
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/.train-state")
    add_settings_arguments(parser, Settings())
    args = parser.parse_args(argv)
    if args.edit_objective not in EDIT_OBJECTIVES:
        parser.error(f"--edit-objective must be one of {sorted(EDIT_OBJECTIVES)}")
    settings = settings_from(args, Settings)
    args.output.mkdir(parents=True, exist_ok=True)
    metrics = train(settings, args.output, args.resume)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
