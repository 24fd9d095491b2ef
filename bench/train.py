"""Combiner training speed: triplets/s from the memory-mapped embedding cache against running the frozen encoder on
every batch (`ScotDataCollator`), with `ScotTrainer` both ways, on random-initialised towers of a real architecture.

    python bench/train.py --model-config clip-b16 --triplets 256 --batch-size 32

Triplets: COCO-like JPEGs (`bench/encode_files.make_images`) with world captions as modification, modified caption,
caption and one hard negative. The cache is built first (its seconds are reported: it is paid once per dataset);
then each way trains the same number of steps. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset, Features, Image, Sequence, Value

from modeling_scot import CachedEmbeddingCollator, ScotConfig, ScotDataCollator, ScotModel, ScotTrainer
from modeling_scot.embedding_cache import build_embedding_cache
from modeling_scot.runtime import resolve_dtype
from modeling_scot.training import ScotTrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import encoder_config  # noqa: E402
from encode_files import make_images, make_texts, processor_for  # noqa: E402


def triplets(folder: Path, count: int) -> Dataset:
    """`count` triplet rows over `count // 4` images (four edits each), in the package's record format."""
    images = make_images(folder, max(1, count // 4))
    texts = make_texts(4 * count)
    rows = {
        "image": [str(images[row % len(images)]) for row in range(count)],
        "source_id": [str(row % len(images)) for row in range(count)],
        "caption": [texts[row % len(images)] for row in range(count)],
        "modification": texts[count : 2 * count],
        "modified_caption": texts[2 * count : 3 * count],
        "hard_negatives": [[text] for text in texts[3 * count : 4 * count]],
    }
    features = Features({
        "image": Image(), "source_id": Value("string"), "caption": Value("string"), "modification": Value("string"),
        "modified_caption": Value("string"), "hard_negatives": Sequence(Value("string")),
    })
    return Dataset.from_dict(rows, features=features)


def trained_seconds(model: ScotModel, rows, collator, args: ScotTrainingArguments) -> float:
    trainer = ScotTrainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default="clip-b16", choices=["clip-b16", "clip-l14"])
    parser.add_argument("--triplets", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="encoder weights")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    config = encoder_config(args.model_config)
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    torch.manual_seed(0)
    model = ScotModel(ScotConfig(encoder_config=config.to_dict()))
    model.encoder.to(dtype)
    model.processor = processor_for(config, None)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = triplets(work / "images", args.triplets)
        steps = args.triplets // args.batch_size
        training = ScotTrainingArguments(
            output_dir=str(work / "run"), per_device_train_batch_size=args.batch_size, max_steps=steps,
            save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True, dataloader_drop_last=True,
            disable_tqdm=True,
        )  # fmt: skip
        started = time.perf_counter()
        cache, index = build_embedding_cache(model, data, work / "cache", progress=False)
        cache_seconds = time.perf_counter() - started
        cached = trained_seconds(model, index.to_list(), CachedEmbeddingCollator(cache), training)
        encoded = trained_seconds(model, data, ScotDataCollator(model.processor), training)
    trained = steps * args.batch_size
    result = {
        "model_config": args.model_config,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "triplets": trained,
        "batch_size": args.batch_size,
        "cache_build_seconds": round(cache_seconds, 2),
        "cached_triplets_per_s": round(trained / cached, 1),
        "encoding_triplets_per_s": round(trained / encoded, 2),
        "speedup": round(encoded / cached, 1),
    }
    print(json.dumps(result))
    if args.output:
        args.output.write_text(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
