"""Encoder throughput: images/s and texts/s of a SCOT model's frozen towers.

Prints one JSON object: the chosen settings (dtype, attention, compile; SCOT's in-place QuickGELU) against
the transformers default (fp32 weights, default attention, transformers' QuickGELU, eager PyTorch) measured
in the same run, so the ratio holds on any machine. Random-initialised towers of real architectures: the
speed does not depend on the weights. `blip2-g` is BLIP-2's retrieval model (Salesforce/blip2-itm-vit-g: ViT-g/14,
a BERT-base Q-Former with 32 query tokens); its images/s include the Q-Former, its texts/s are the Q-Former's text
path.

    python bench/encode.py --model-config clip-b16 --dtype bf16 --attn sdpa --synthetic
    python bench/encode.py --model-config blip2-g --dtype bf16 --attn sdpa --synthetic --batch-size 4
    python bench/encode.py --model-config siglip2-b16 --images /tmp/coco-like
    python bench/encode.py --model-config clip-b16 --images /tmp/coco-like --make-images 96

With `--images DIR` (and `--make-images N` to write N COCO-like JPEGs there first) it times, in one run, the
package's path from file to embedding (`embed_gallery`: decode, preprocess, the towers in `--dtype`, chunked
cache) and transformers' default on the same files (PIL, the model's image processor, fp32 weights), world
captions through `encode_texts` against the tokenizer and fp32 text tower batch by batch, the machine's bf16 and
fp32 matmul speed on the model's MLP shapes (the limit: that speed over the GFLOP of one image) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import Blip2Config, CLIPConfig, PreTrainedConfig, Siglip2Config
from transformers.activations import QuickGELUActivation

from modeling_scot import ScotConfig, ScotModel, ScotProcessor, world
from modeling_scot.activations import InferenceQuickGELU, replace_modules
from modeling_scot.retrieval.sources import image_files
from modeling_scot.runtime import resolve_device, resolve_dtype

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_files import make_images, make_texts, measure_files, random_image_inputs  # noqa: E402

ARCHITECTURES = {
    "clip-l14": dict(
        projection_dim=768,
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision_config=dict(
            image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16
        ),
    ),
    "clip-b16": dict(
        projection_dim=512,
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(
            image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
        ),
    ),
}
SIGLIP2_ARCHITECTURES = {
    "siglip2-b16": dict(
        text_config=dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, vocab_size=256000
        ),
        vision_config=dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16, num_patches=256
        ),
    ),
}
BLIP2_ARCHITECTURES = {
    "blip2-g": dict(
        vision_config=dict(
            image_size=224, patch_size=14, hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16
        ),
        qformer_config=dict(
            vocab_size=30523, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            cross_attention_frequency=2, use_qformer_text_input=True,
        ),
        num_query_tokens=32,
        image_text_hidden_size=256,
        architectures=["Blip2ForImageTextRetrieval"],
    ),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def encoder_config(name: str) -> PreTrainedConfig:
    if name == "world":
        config_file = world.clip_path() / "config.json"
        if not config_file.is_file():
            sys.exit(f"--model-config world needs the shipped world CLIP at {config_file.parent}")
        return CLIPConfig.from_pretrained(config_file.parent)
    if name in BLIP2_ARCHITECTURES:
        return Blip2Config(**BLIP2_ARCHITECTURES[name])
    if name in SIGLIP2_ARCHITECTURES:
        return Siglip2Config(**SIGLIP2_ARCHITECTURES[name])
    return CLIPConfig(**ARCHITECTURES[name])


def build(config: PreTrainedConfig, dtype: torch.dtype, attn: str | None, device: torch.device, default: bool = False) -> ScotModel:
    """A SCOT model around random towers; `default` puts back transformers' own QuickGELU modules."""
    torch.manual_seed(0)
    scot_config = ScotConfig(encoder_config=config.to_dict(), attn_implementation=attn)
    model = ScotModel(scot_config).to(device=device, dtype=dtype).eval()
    if default:
        replace_modules(model.encoder, InferenceQuickGELU, QuickGELUActivation)
    return model


def throughput(fn, items_per_call: int, min_seconds: float, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 2:
            return calls * items_per_call / elapsed


def measure(model: ScotModel, config: PreTrainedConfig, batch_size: int, text_length: int, compile_towers: bool, args) -> dict:
    device = model.device
    image_inputs = {name: value.to(device) for name, value in random_image_inputs(config, batch_size).items()}
    input_ids = torch.randint(0, model.encoder_adapter.vocab_size - 1, (batch_size, text_length), device=device)
    if isinstance(config, CLIPConfig):  # CLIP pools its text at the end-of-text token
        input_ids[:, -1] = config.text_config.eos_token_id
    if compile_towers:
        model.compile_encoders()
    with torch.inference_mode():
        images_per_s = throughput(lambda: model.get_image_features(**image_inputs), batch_size, args.seconds, args.warmup)
        texts_per_s = throughput(lambda: model.get_text_features(input_ids), batch_size, args.seconds, args.warmup)
    return {"images_per_s": round(images_per_s, 2), "texts_per_s": round(texts_per_s, 2)}


def shipped_processor(name: str) -> ScotProcessor | None:
    """The world CLIP's own processor for `world`; None for the random-weight architectures."""
    return ScotProcessor.from_pretrained(world.clip_path()) if name == "world" else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", choices=[*ARCHITECTURES, *SIGLIP2_ARCHITECTURES, *BLIP2_ARCHITECTURES, "world"], default="clip-b16")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: as the scot commands pick")
    parser.add_argument("--attn", choices=["eager", "sdpa"], default="sdpa")
    parser.add_argument("--compile", action="store_true", help="torch.compile both towers")
    parser.add_argument("--synthetic", action="store_true", help="the towers alone on random pixels and token ids")
    parser.add_argument("--images", type=Path, help="a folder of images: time from file to embedding")
    parser.add_argument("--make-images", type=int, metavar="N", help="first write N COCO-like JPEGs into --images")
    parser.add_argument("--texts", type=int, default=2048, help="world captions to embed (files mode)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--text-batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the package's path")
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.synthetic == (args.images is not None):
        parser.error("give either --synthetic (towers on random inputs) or --images DIR (from files)")

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    config = encoder_config(args.model_config)
    result = {
        "model_config": args.model_config,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
    }
    if args.synthetic:
        ours = measure(build(config, dtype, args.attn, device), config, args.batch_size, args.text_length, args.compile, args)
        default = measure(build(config, torch.float32, None, device, default=True), config, args.batch_size, args.text_length, False, args)
        result |= {
            "attn": args.attn,
            "compile": args.compile,
            **ours,
            "default": default,
            "images_speedup": round(ours["images_per_s"] / default["images_per_s"], 3),
            "texts_speedup": round(ours["texts_per_s"] / default["texts_per_s"], 3),
        }
    else:
        if device.type != "cpu":
            parser.error("--images measures on the CPU only (the GPU path: --synthetic)")
        if args.make_images:
            make_images(args.images, args.make_images)
        paths = image_files([args.images])
        texts = make_texts(args.texts)
        result |= {"num_workers": args.num_workers, "compile": args.compile, **measure_files(config, shipped_processor(args.model_config),
                                                                     paths, texts, dtype, args)}
    text = json.dumps(result)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
