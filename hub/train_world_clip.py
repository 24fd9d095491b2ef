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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

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


def build_processor(settings: Settings) -> ScotProcessor:
    size = settings.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    tokenizer = build_word_level_tokenizer(world_vocabulary(), model_max_length=settings.max_text_length)
    return ScotProcessor(image_processor=image_processor, tokenizer=tokenizer)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised float (B, 3, H, W), as the processor does for 64 px inputs."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def rendered_pixels(scenes: list, settings: Settings) -> torch.Tensor:
    """`scenes` rendered at `settings.image_size` and CLIP-normalised, (N, 3, H, W)."""
    return normalise(torch.from_numpy(np.stack([np.asarray(render_scene(s, settings.image_size)) for s in scenes])))


def render_pool(settings: Settings) -> tuple[list, torch.Tensor]:
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


def paraphrase_loss(model: CLIPModel, tokens, count: int, scale: float) -> torch.Tensor:
    """InfoNCE between two phrasings of the same edit, against the batch's other edits, both ways: the text
    tower learns what edit wording means (which change, to which object) without being told how an edit
    moves a caption's embedding."""
    embeds = F.normalize(model.get_text_features(**tokens).pooler_output.float(), dim=-1)
    first, second = embeds.split(count)
    logits = scale * first @ second.T
    labels = torch.arange(count)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def edit_direction_loss(model: CLIPModel, tokens, count: int, scale: float) -> torch.Tensor:
    """InfoNCE between each modification's embedding and the direction from its caption to its modified
    caption (normalised T_u - T_c), against the other directions of the batch, both ways."""
    embeds = F.normalize(model.get_text_features(**tokens).pooler_output.float(), dim=-1)
    captions, modifications, targets = embeds.split(count)
    logits = scale * modifications @ F.normalize(targets - captions, dim=-1).T
    labels = torch.arange(count)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def lr_at(step: int, total: int, settings: Settings) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, total - settings.warmup_steps))
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


@torch.inference_mode()
def held_out_recall(model: CLIPModel, processor: ScotProcessor, settings: Settings, seen: set) -> dict[str, float]:
    """Image->text and text->image Recall@1 (percent) on distinct scenes outside the training pool
    (`seen`), with canonical captions."""
    rng = derived_rng("world-clip-eval", settings.seed)
    scenes: dict = {}
    while len(scenes) < settings.eval_scenes:
        scene = sample_scene(rng)
        if scene not in seen:
            scenes.setdefault(scene)
    scenes = list(scenes)
    pixels = rendered_pixels(scenes, settings)
    tokens = processor(text=[caption(s) for s in scenes], return_tensors="pt")
    model.eval()
    images = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    texts = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
    similarity = images @ texts.T
    truth = torch.arange(len(scenes))
    return {
        "image_to_text_recall@1": round(100 * (similarity.argmax(1) == truth).float().mean().item(), 2),
        "text_to_image_recall@1": round(100 * (similarity.argmax(0) == truth).float().mean().item(), 2),
        "binding_text_to_image_recall@1": binding_recall(model, processor, settings, scenes, rng),
        "scenes": len(scenes),
    }


def binding_recall(
    model: CLIPModel, processor: ScotProcessor, settings: Settings, scenes: list, rng: random.Random
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
    images = torch.cat([model.get_image_features(pixel_values=chunk).pooler_output for chunk in pixels.split(512)])
    images = F.normalize(images, dim=-1).split([len(group) for group in groups])
    tokens = processor(text=[caption(group[0]) for group in groups], return_tensors="pt")
    texts = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
    hits = sum(int((group_images @ text).argmax().item() == 0) for group_images, text in zip(images, texts))
    return round(100 * hits / max(1, len(groups)), 2)


def save_state(folder: Path, model: CLIPModel, optimizer: torch.optim.Optimizer, counters: dict) -> None:
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
    (folder / "counters.json.tmp").write_text(json.dumps(counters))
    os.replace(folder / "counters.json.tmp", folder / "counters.json")


def load_state(folder: Path, model: CLIPModel, optimizer: torch.optim.Optimizer) -> dict:
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


def write_card(
    output: Path, settings: Settings, command: str, metrics: dict, curve: list, parameters: int, elapsed: float
) -> None:
    losses = "\n".join(
        f"| {row['step']} | {row['loss']:.4f} | {row['edit_loss']:.4f} |" for row in curve[:: max(1, len(curve) // 20)]
    )
    negatives = "a variant with one attribute of one object changed"
    if settings.binding_negative_fraction > 0:
        negatives = (
            f"with probability {settings.binding_negative_fraction} (where the scene has two objects) a binding "
            "variant, in which two objects trade one attribute or their cells so that the caption's words stay "
            f"the same but belong to other objects, else {negatives}"
        )
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

## Loss curve (every {max(1, len(curve) // 20)}th logged step; all steps in `loss_curve.json`)

| step | CLIP loss | edit-direction loss |
|---|---|---|
{losses}

## License

Apache-2.0, like the rest of `modeling_scot`.
"""
    (output / "README.md.tmp").write_text(text)
    os.replace(output / "README.md.tmp", output / "README.md")


def train(settings: Settings, output: Path, resume: bool) -> dict:
    torch.manual_seed(settings.seed)
    processor = build_processor(settings)
    model = CLIPModel(clip_config(settings, len(processor.tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    state_dir = output / STATE_DIR
    counters = {"step": 0, "elapsed": 0.0, "curve": []}
    if resume and (state_dir / "counters.json").is_file():
        counters = load_state(state_dir, model, optimizer)
        print(f"resuming at step {counters['step']}", file=sys.stderr)
    scenes, pixels = render_pool(settings)
    backend = RulesBackend(seed=settings.seed, num_hard_negatives=0)
    model.train()
    bar = tqdm(desc="training world CLIP", unit="step", initial=counters["step"])
    last_save = time.monotonic()
    while counters["step"] < settings.steps:
        started = time.monotonic()
        step = counters["step"]
        rng = derived_rng("world-clip-batch", settings.seed, step)
        pairs = rng.sample(range(settings.pool_pairs), settings.pairs_per_batch)
        rows = [index for pair in pairs for index in (2 * pair, 2 * pair + 1)]
        captions, positives = batch_captions(scenes, rows, rng, settings.partial_caption_fraction)
        tokens = processor(text=captions, return_tensors="pt")
        if settings.edit_objective == "paraphrase":
            texts, edit_loss_fn = paraphrase_texts(scenes, rng, settings.edit_pairs_per_batch), paraphrase_loss
        else:
            texts, edit_loss_fn = edit_texts(scenes, rng, settings.edit_pairs_per_batch, backend), edit_direction_loss
        edit_tokens = processor(text=texts, return_tensors="pt")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings.steps, settings)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            # Without partial captions keep transformers' own CLIP loss, so earlier cards' commands reproduce exactly.
            plain = settings.partial_caption_fraction == 0
            forward = model(pixel_values=normalise(pixels[rows]), return_loss=plain, **tokens)
            clip_loss = forward.loss if plain else multi_positive_clip_loss(forward.logits_per_text, positives)
            edit_loss = edit_loss_fn(model, edit_tokens, settings.edit_pairs_per_batch, settings.edit_logit_scale)
            loss = clip_loss + settings.edit_loss_weight * edit_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        counters["step"] += 1
        counters["elapsed"] += time.monotonic() - started
        counters["curve"].append(
            {"step": counters["step"], "loss": round(clip_loss.item(), 5), "edit_loss": round(edit_loss.item(), 5)}
        )
        bar.update(1)
        bar.set_postfix(loss=f"{clip_loss.item():.3f}", edit=f"{edit_loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if time.monotonic() - last_save > 120:
            save_state(state_dir, model, optimizer, counters)
            last_save = time.monotonic()
    bar.close()
    save_state(state_dir, model, optimizer, counters)
    metrics = held_out_recall(model, processor, settings, set(scenes))
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "loss_curve.json").write_text(json.dumps(counters["curve"]))
    command = "python -m hub.train_world_clip " + shlex.join(arg for arg in sys.argv[1:] if arg != "--resume")
    parameters = sum(p.numel() for p in model.parameters())
    write_card(output, settings, command, metrics, counters["curve"], parameters, counters["elapsed"])
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("modeling_scot/assets/world-clip"))
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/.train-state")
    for field, default in asdict(Settings()).items():
        kind = type(default)
        if kind is bool:
            parser.add_argument(f"--{field.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=default)
    args = parser.parse_args(argv)
    if args.edit_objective not in EDIT_OBJECTIVES:
        parser.error(f"--edit-objective must be one of {sorted(EDIT_OBJECTIVES)}")
    settings = Settings(**{field: getattr(args, field) for field in asdict(Settings())})
    args.output.mkdir(parents=True, exist_ok=True)
    metrics = train(settings, args.output, args.resume)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
