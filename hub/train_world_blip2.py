"""Train a small BLIP-2 retrieval model of the built-in world from scratch and write it as a shippable folder.

    python -m hub.train_world_blip2 --output /tmp/world-blip2 --seed 0 --steps 1000

The model is transformers' `Blip2ForImageTextRetrieval` on its contrastive (ITC) path: a ViT reads the rendered
scene, the Q-Former's query tokens read the ViT's patches and give one vector per query, and the same Q-Former
embeds a caption as the state of its first (`<bos>`) token. An image and a text score the best of the image's
query vectors against the text, as in BLIP-2's ITC. Training follows `hub.train_world_clip`, whose helpers it
uses: the same rendered pool and batches (each scene with a hard negative of itself), freshly paraphrased
captions, the paraphrase edit loss on the text embeddings, AdamW with a cosine schedule, bf16 autocast on CPU,
and a seeded run whose state is saved every few minutes and continued by `--resume`. The symmetric contrastive
loss divides by BLIP-2's learnable temperature, which belongs to the training state and not to the shipped
model. The output folder holds the model (safetensors), its processor, the loss curve and a card (README.md)
with the command and the held-out retrieval scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    Blip2Config,
    Blip2ForImageTextRetrieval,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipImageProcessor,
    OPTConfig,
    PreTrainedTokenizerFast,
)

from hub.train_world_clip import (
    BINDING_CANDIDATES,
    CLIP_MEAN,
    CLIP_STD,
    EDIT_OBJECTIVES,
    STATE_DIR,
    WorldRetriever,
    add_settings_arguments,
    batch_captions,
    batch_rng,
    batch_rows,
    command_line,
    hard_negatives_text,
    held_out_recall,
    loss_table,
    multi_positive_clip_loss,
    normalise,
    paraphrase_loss,
    paraphrase_texts,
    render_pool,
    rendered_pixels,
    replace_file,
    run_steps,
    save_folder,
    settings_from,
    world_tokenizer,
)
from modeling_scot import ScotProcessor
from modeling_scot.world import caption, render_scene

TEMPERATURE_RANGE = (0.001, 0.5)
"""BLIP-2's bounds on its contrastive temperature."""
VISION_INIT_STD = 0.02
"""The ViT's initialisation for training from scratch (transformers' default of 1e-10 suits loading weights)."""
ROUND_TRIP_SCENES = 8
"""Training scenes on which the folder, loaded back, must embed as the trained model does."""
ROUND_TRIP_TOLERANCE = 1e-5


@dataclass
class Settings:
    """Everything that determines the trained model; recorded in the card. The batches are half the world CLIP's,
    so that its 1000 steps take about half an hour on one CPU thread. The Q-Former has no dropout (BLIP-2's is
    0.1), like the world CLIP: the captions are paraphrased afresh and the pool is seen about twice, and with
    dropout 0.1 the same 1000 steps reach a third of the held-out Recall@1."""

    seed: int = 0
    steps: int = 1000
    pairs_per_batch: int = 64
    pool_pairs: int = 30000
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 192
    vision_layers: int = 4
    qformer_width: int = 128
    qformer_layers: int = 3
    heads: int = 4
    num_query_tokens: int = 16
    qformer_dropout: float = 0.0
    projection_dim: int = 128
    max_text_length: int = 48
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    initial_temperature: float = 0.07
    binding_negative_fraction: float = 0.0
    bf16: bool = True
    eval_scenes: int = 1000
    edit_pairs_per_batch: int = 48
    edit_loss_weight: float = 0.5
    edit_logit_scale: float = 20.0


class Blip2Training(torch.nn.Module):
    """The model being trained together with the contrastive temperature, which only the training state keeps."""

    def __init__(self, model: Blip2ForImageTextRetrieval, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = torch.nn.Parameter(torch.tensor(temperature))


def blip2_config(settings: Settings, tokenizer: PreTrainedTokenizerFast) -> Blip2Config:
    """The world BLIP-2 retrieval architecture (about 3.1M parameters with the default widths). The one-layer OPT
    its `text_config` names is not part of the retrieval model."""
    vocab_size = len(tokenizer)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            image_size=settings.image_size,
            patch_size=settings.patch_size,
            hidden_size=settings.vision_width,
            intermediate_size=4 * settings.vision_width,
            num_hidden_layers=settings.vision_layers,
            num_attention_heads=settings.heads,
            initializer_range=VISION_INIT_STD,
        ),
        qformer_config=Blip2QFormerConfig(
            vocab_size=vocab_size,
            hidden_size=settings.qformer_width,
            intermediate_size=4 * settings.qformer_width,
            num_hidden_layers=settings.qformer_layers,
            num_attention_heads=settings.heads,
            cross_attention_frequency=1,
            max_position_embeddings=settings.max_text_length,
            use_qformer_text_input=True,
            pad_token_id=tokenizer.pad_token_id,
            hidden_dropout_prob=settings.qformer_dropout,
            attention_probs_dropout_prob=settings.qformer_dropout,
        ),
        num_query_tokens=settings.num_query_tokens,
        image_text_hidden_size=settings.projection_dim,
        text_config=OPTConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=settings.max_text_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
    )
    if config.qformer_config.encoder_hidden_size != settings.vision_width:
        raise ValueError(
            f"the Q-Former cross-attends to {config.qformer_config.encoder_hidden_size}-d states but the ViT "
            f"gives {settings.vision_width}-d ones"
        )
    return config


def new_model(settings: Settings, tokenizer: PreTrainedTokenizerFast) -> Blip2ForImageTextRetrieval:
    """A freshly initialised model. Its query tokens are drawn as BLIP-2 draws them for training (transformers
    starts them at zero, which makes every query the same)."""
    model = Blip2ForImageTextRetrieval(blip2_config(settings, tokenizer))
    with torch.no_grad():
        model.query_tokens.normal_(0.0, model.config.qformer_config.initializer_range)
    return model


def build_processor(settings: Settings) -> ScotProcessor:
    """The processor shipped with the model: BLIP's image processor at `image_size` and the world tokenizer."""
    size = settings.image_size
    image_processor = BlipImageProcessor(
        size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True
    )
    tokenizer = world_tokenizer(settings.max_text_length)
    if tokenizer("a")["input_ids"][0] != tokenizer.bos_token_id:
        raise ValueError("the world tokenizer must start every text with <bos>: BLIP-2 embeds a text by its first")
    return ScotProcessor(image_processor=image_processor, tokenizer=tokenizer)


def image_vectors(model: Blip2ForImageTextRetrieval, pixel_values: torch.Tensor) -> torch.Tensor:
    """The normalised, projected Q-Former query outputs of each image, (B, num_query_tokens, projection_dim)."""
    patches = model.vision_model(pixel_values=pixel_values).last_hidden_state
    queries = model.query_tokens.expand(patches.shape[0], -1, -1)
    states = model.qformer(query_embeds=queries, encoder_hidden_states=patches).last_hidden_state
    return F.normalize(model.vision_projection(states), dim=-1)


def text_embeds(
    model: Blip2ForImageTextRetrieval, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The normalised, projected Q-Former state of each text's first token, (B, projection_dim)."""
    embeddings = model.embeddings(input_ids=input_ids)
    states = model.qformer(query_embeds=embeddings, query_length=0, attention_mask=attention_mask).last_hidden_state
    return F.normalize(model.text_projection(states[:, 0]), dim=-1)


def query_max_similarity(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """(images, texts) similarity of each image's best query vector, as BLIP-2's ITC scores."""
    return torch.einsum("iqd,td->iqt", images, texts).amax(dim=1)


def query_mean_similarity(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """(images, texts) cosine similarity of the (re-normalised) mean of each image's query vectors."""
    return F.normalize(images.mean(dim=1), dim=-1) @ texts.T


SIMILARITIES = {"max": query_max_similarity, "mean": query_mean_similarity}
"""How an image's query vectors score a text: the best of them (BLIP-2's ITC, what training optimises) or their mean."""


def blip2_retriever(model: Blip2ForImageTextRetrieval, pooling: str) -> WorldRetriever:
    """The model's query vectors and text embeddings, scored by `SIMILARITIES[pooling]`."""
    return WorldRetriever(
        image_vectors=partial(image_vectors, model),
        text_vectors=lambda tokens: text_embeds(model, tokens["input_ids"], tokens["attention_mask"]),
        similarity=SIMILARITIES[pooling],
    )


def blip2_losses(
    step: int,
    training: Blip2Training,
    processor: ScotProcessor,
    scenes: list,
    pixels: torch.Tensor,
    settings: Settings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contrastive loss and the paraphrase edit loss of training step `step`. The Q-Former's dropout draws
    from torch's generator, seeded here per step so that a resumed run draws the same."""
    rng = batch_rng(settings, step)
    rows = batch_rows(rng, settings)
    captions, positives = batch_captions(scenes, rows, rng, partial_fraction=0.0)
    tokens = processor(text=captions, return_tensors="pt")
    edit_tokens = processor(text=paraphrase_texts(scenes, rng, settings.edit_pairs_per_batch), return_tensors="pt")
    torch.manual_seed(rng.randrange(1 << 63))
    model = training.model
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
        images = image_vectors(model, normalise(pixels[rows]))
        texts = text_embeds(model, tokens["input_ids"], tokens["attention_mask"])
        logits_per_text = query_max_similarity(images, texts).T / training.temperature
        contrastive_loss = multi_positive_clip_loss(logits_per_text, positives)
        edit_features = text_embeds(model, edit_tokens["input_ids"], edit_tokens["attention_mask"])
        edit_loss = paraphrase_loss(edit_features, settings.edit_pairs_per_batch, settings.edit_logit_scale)
    return contrastive_loss, edit_loss


def clamp_temperature(training: Blip2Training) -> None:
    """Keep the temperature within BLIP-2's `TEMPERATURE_RANGE`."""
    with torch.no_grad():
        training.temperature.clamp_(*TEMPERATURE_RANGE)


@torch.inference_mode()
def check_round_trip(
    output: Path, model: Blip2ForImageTextRetrieval, processor: ScotProcessor, scenes: list, settings: Settings
) -> None:
    """Load `output` back as transformers and SCOT load it and check that it embeds `scenes` (rendered images
    through the loaded processor) and their captions as the trained `model` (in eval mode) does."""
    loaded_model = Blip2ForImageTextRetrieval.from_pretrained(output)
    loaded_processor = ScotProcessor.from_pretrained(output)
    texts = [caption(scene) for scene in scenes]
    loaded = loaded_processor(images=[render_scene(scene, settings.image_size) for scene in scenes], text=texts)
    tokens = processor(text=texts, return_tensors="pt")
    embeddings = {
        "image": (
            image_vectors(model, rendered_pixels(scenes, settings)),
            image_vectors(loaded_model, loaded["pixel_values"]),
        ),
        "text": (
            text_embeds(model, tokens["input_ids"], tokens["attention_mask"]),
            text_embeds(loaded_model, loaded["input_ids"], loaded["attention_mask"]),
        ),
    }
    for kind, (trained, reloaded) in embeddings.items():
        if trained.shape != reloaded.shape or not torch.allclose(trained, reloaded, atol=ROUND_TRIP_TOLERANCE):
            raise RuntimeError(f"{output} loaded back gives other {kind} embeddings than the model that was saved")


def write_card(
    output: Path,
    settings: Settings,
    command: str,
    metrics: dict[str, dict],
    counters: dict,
    temperature: float,
    parameters: int,
) -> None:
    """The folder's README.md: what the model is, how it was trained, its held-out scores and loss curve."""
    stride, losses = loss_table(counters["curve"])
    best, mean = metrics["max"], metrics["mean"]
    threads = torch.get_num_threads()
    text = f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: zero-shot-image-classification
tags: [blip-2, synthetic, modeling-scot-world]
---

# World BLIP-2

A small `Blip2ForImageTextRetrieval` ({parameters / 1e6:.2f}M parameters, {settings.image_size} px images, patch
{settings.patch_size}, vision {settings.vision_layers} x {settings.vision_width}, Q-Former {settings.qformer_layers} x
{settings.qformer_width} with {settings.num_query_tokens} query tokens and cross-attention in every layer,
{settings.projection_dim}-d embeddings, word-level tokenizer over the closed world vocabulary) trained from
scratch on the procedurally rendered scenes and captions of `modeling_scot`'s built-in world. It lets the SCOT
pipeline run a BLIP-2 backbone end to end offline; it knows nothing outside that world. Only its contrastive
(ITC) path is trained: an image is embedded as its {settings.num_query_tokens} normalised query vectors, a text
as the projected Q-Former state of its first (`<bos>`) token, and an image scores a text by its best query
vector. The image-text matching head is untrained, and the one-layer OPT that `text_config` names is not part
of the model.

## Training

Command (seed {settings.seed}):

```
{command}
```

Settings: `{json.dumps(asdict(settings))}`

Each batch holds {settings.pairs_per_batch} rendered scenes and, for each, a hard negative:
{hard_negatives_text(settings.binding_negative_fraction)}; captions are freshly paraphrased; a symmetric
contrastive loss over the batch on the best query's similarity divided by a learnable temperature (BLIP-2's:
{settings.initial_temperature} at first, kept within {list(TEMPERATURE_RANGE)}; it ended at {temperature:.4f}
and is not part of the model), AdamW, cosine schedule, {'bf16 autocast' if settings.bf16 else 'fp32'} on CPU.
The text side also learns what edit wording means: {EDIT_OBJECTIVES['paraphrase']} (weight
{settings.edit_loss_weight}, {settings.edit_pairs_per_batch} edits per batch). Those texts come from training
scenes and training changes only (the benchmark's held-out changes and test scenes never occur). Steps:
{settings.steps}; training time: {counters['elapsed'] / 60:.1f} minutes on {threads} CPU
thread{'s' if threads > 1 else ''}.

## Held-out retrieval ({best['scenes']} scenes outside the training pool, canonical captions)

Recall@1 (%), an image scored by its best query vector (as trained) or by the mean of its query vectors:

| direction | best query | mean of the queries |
|---|---|---|
| image -> text | {best['image_to_text_recall@1']} | {mean['image_to_text_recall@1']} |
| text -> image | {best['text_to_image_recall@1']} | {mean['text_to_image_recall@1']} |
| text -> image among the scene and {BINDING_CANDIDATES - 1} of its binding variants | {best['binding_text_to_image_recall@1']} | {mean['binding_text_to_image_recall@1']} |

## Loss curve (every {stride}th logged step; all steps in `loss_curve.json`)

| step | contrastive loss | paraphrase loss |
|---|---|---|
{losses}

## License

Apache-2.0, like the rest of `modeling_scot`.
"""
    replace_file(output / "README.md", text)


def train(settings: Settings, output: Path, resume: bool) -> dict[str, dict]:
    """Train (or, with `resume`, go on training) and write the shippable folder; returns the held-out scores of
    each query pooling."""
    torch.manual_seed(settings.seed)
    processor = build_processor(settings)
    model = new_model(settings, processor.tokenizer)
    training = Blip2Training(model, settings.initial_temperature)
    optimizer = torch.optim.AdamW(
        [{"params": model.parameters()}, {"params": [training.temperature], "weight_decay": 0.0}],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    scenes, pixels = render_pool(settings)
    losses_at = partial(
        blip2_losses, training=training, processor=processor, scenes=scenes, pixels=pixels, settings=settings
    )
    after_step = partial(clamp_temperature, training)
    description = "training world BLIP-2"
    counters = run_steps(training, optimizer, settings, output / STATE_DIR, resume, losses_at, after_step, description)
    model.eval()
    seen = set(scenes)
    metrics = {
        pooling: held_out_recall(blip2_retriever(model, pooling), processor, settings, seen) for pooling in SIMILARITIES
    }
    save_folder(output, model, processor, counters["curve"])
    check_round_trip(output, model, processor, scenes[:ROUND_TRIP_SCENES], settings)
    command = command_line("hub.train_world_blip2")
    parameters = sum(p.numel() for p in model.parameters())
    write_card(output, settings, command, metrics, counters, training.temperature.item(), parameters)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/.train-state")
    add_settings_arguments(parser, Settings())
    args = parser.parse_args(argv)
    settings = settings_from(args, Settings)
    args.output.mkdir(parents=True, exist_ok=True)
    metrics = train(settings, args.output, args.resume)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
