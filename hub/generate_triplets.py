"""Write SCOT training triplets for captioned images with an LLM (or the world's rules) into resumable shards.

    python -m hub.generate_triplets --backend openai --model NAME --base-url http://localhost:8000/v1 \\
        --captions captions_train2017.json --output triplets/ [--resume] [--limit N]
    python -m hub.generate_triplets --backend transformers --model Qwen/Qwen2.5-7B-Instruct --captions data.csv --output triplets/
    python -m hub.generate_triplets --backend rules --captions world --num-scenes 10000 --output triplets/

Every request gets one row in the numbered shards of --output, accepted or rejected with a reason, with the
raw answer and the generation settings; kill the run at any moment and rerun with --resume to continue.
Build a dataset from the shards with `python -m hub.build_dataset`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hub.cli_output import fail
from modeling_scot.io_utils import check_output_path
from modeling_scot.triplets.backend import CaptionRequest, TripletBackend
from modeling_scot.triplets.chat import NOT_SENT, attempt_triplets
from modeling_scot.triplets.registry import BACKEND_NAMES, get_backend
from modeling_scot.triplets.shards import ShardState, ShardWriter, attempt_row
from modeling_scot.triplets.sources import CaptionSource, caption_requests, open_captions
from modeling_scot.triplets.validation import Attempt, Limits


class BackendFailed(RuntimeError):
    """Every request of a batch failed: the server is unusable, so the run stops and writes none of that batch."""


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _deduplicated(attempt: Attempt, state: ShardState) -> Attempt:
    record = attempt.record
    if record is None or state.seen.add(record.source_id, record.modification, record.modified_caption):
        return attempt
    return Attempt(attempt.request, None, "duplicate", "an equal triplet of this image was accepted before", attempt.raw_response)


def generate_triplets(
    backend: TripletBackend,
    captions: CaptionSource,
    output: Path,
    *,
    variants: int = 1,
    limits: Limits | None = None,
    resume: bool = False,
    limit: int | None = None,
    batch_size: int = 64,
    shard_size: int = 1000,
    flush_seconds: float = 60.0,
    progress: bool = True,
) -> tuple[ShardState, str]:
    """Write one shard row per request of `captions` (times `variants`) into `output`; return the state and status.

    The status is `complete` (all requests done), `limit_reached` (`limit` accepted triplets),
    `source_exhausted` (all requests done before `limit` accepted triplets), or `stopped` (the backend's request
    cap was reached; resume later). Raises `BackendFailed` when every request of a batch failed (that batch is
    not written, so a resumed run asks again).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1 or variants < 1:
        raise ValueError(f"--batch-size and --variants must be >= 1, got {batch_size}, {variants}")
    num_requests = captions.count() * variants
    if num_requests == 0:
        spec = captions.spec()
        raise ValueError(f"--captions {spec.get('path') or spec.get('source') or spec['kind']} holds no caption")
    limits = limits or Limits()
    settings = backend.settings()
    run = {"backend": settings, "source": captions.spec(), "variants": variants, "limits": limits.to_dict()}
    writer = ShardWriter.open(output, run, resume=resume, shard_size=shard_size, flush_seconds=flush_seconds)
    state = writer.state
    if limit is not None and state.accepted >= limit:
        writer.close("limit_reached")
        return state, "limit_reached"
    requests = islice(enumerate(caption_requests(captions, variants)), state.next_position, None)
    if limit is not None:
        total, initial, unit = limit, state.accepted, "triplet"
    else:
        total, initial, unit = num_requests, state.next_position, "request"
    bar = tqdm(total=total, initial=initial, unit=unit, desc=f"{unit}s", disable=not progress, dynamic_ncols=True)
    status = "complete"
    try:
        for batch in _batches(requests, batch_size):
            status = _run_batch(backend, batch, writer, settings, limits, limit, bar)
            bar.set_postfix(accepted=state.accepted, rejected=sum(state.rejected.values()), refresh=False)
            if status != "complete":
                break
    except BaseException:
        writer.close("stopped")
        raise
    finally:
        bar.close()
    if status == "complete" and limit is not None and state.accepted < limit:
        status = "source_exhausted"
    writer.close(status)
    return state, status


def _run_batch(
    backend: TripletBackend,
    batch: list[tuple[int, CaptionRequest]],
    writer: ShardWriter,
    settings: dict[str, Any],
    limits: Limits,
    limit: int | None,
    bar: tqdm,
) -> str:
    """Attempt one batch and write its rows in order; the run's status after it."""
    attempts = attempt_triplets(backend, [request for _, request in batch], limits)
    if attempts and all(attempt.reason == "request_failed" for attempt in attempts):
        raise BackendFailed(
            f"every request of a batch failed, e.g. {attempts[0].detail}; nothing of that batch was written: "
            f"rerun with --resume once the server answers"
        )
    state = writer.state
    for (position, _), attempt in zip(batch, attempts):
        if attempt.reason == NOT_SENT:
            return "stopped"
        attempt = _deduplicated(attempt, state)
        writer.add(attempt_row(position, attempt, settings))
        if limit is None:
            bar.update(1)
        elif attempt.record is not None:
            bar.update(1)
            if state.accepted >= limit:
                return "limit_reached"
    return "complete"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub.generate_triplets",
        description="Write SCOT triplets (caption, modification, modified caption, hard negatives) into resumable shards.",
    )
    parser.add_argument("--backend", required=True, choices=BACKEND_NAMES, help="who writes the triplets")
    parser.add_argument(
        "--captions",
        required=True,
        help="'world', a COCO-captions .json, a .csv/.tsv/.jsonl table, a dataset folder or a Hub dataset id",
    )
    parser.add_argument("--output", required=True, type=Path, help="folder of the shards and manifest.json")
    parser.add_argument("--resume", action="store_true", help="continue the run whose shards are in --output")
    parser.add_argument("--limit", type=int, help="stop after this many accepted, de-duplicated triplets")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and the world's scene seed)")
    parser.add_argument("--num-hard-negatives", type=int, default=3, help="hard-negative captions asked per triplet")
    parser.add_argument("--variants", type=int, default=1, help="triplets asked per caption")
    parser.add_argument("--batch-size", type=int, default=64, help="requests per batch (the pipeline batch too)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per shard")
    parser.add_argument("--flush-seconds", type=float, default=60.0, help="write a shard at least this often")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    source = parser.add_argument_group("captions")
    source.add_argument("--image-column", default="image", help="image column of a table or dataset")
    source.add_argument("--caption-column", default="caption", help="caption column of a table or dataset")
    source.add_argument("--id-column", help="image id column of a table or dataset (default: the image)")
    source.add_argument("--split", default="train", help="split of a dataset")
    source.add_argument("--num-scenes", type=int, default=1000, help="scenes of --captions world")
    llm = parser.add_argument_group("LLM backends (transformers, openai)")
    llm.add_argument("--model", help="model id or folder (transformers) or served model name (openai)")
    llm.add_argument("--temperature", type=float, default=0.8)
    llm.add_argument("--top-p", type=float, default=0.95)
    llm.add_argument("--max-new-tokens", type=int, default=512)
    llm.add_argument("--max-modification-words", type=int, default=Limits.max_modification_words)
    llm.add_argument("--max-caption-words", type=int, default=Limits.max_caption_words)
    local = parser.add_argument_group("transformers backend")
    local.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    local.add_argument("--device-map", help="e.g. 'auto' to spread the model over the GPUs")
    remote = parser.add_argument_group("openai backend")
    remote.add_argument("--base-url", default="https://api.openai.com/v1", help="API root of the server")
    remote.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    remote.add_argument("--max-requests", type=int, help="cap on HTTP requests, retries included")
    remote.add_argument("--max-retries", type=int, default=5, help="retries after 429, 5xx or timeouts")
    remote.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    remote.add_argument("--json-mode", action="store_true", help="ask the server for JSON-only answers")
    return parser


def _backend(args: argparse.Namespace, limits: Limits) -> TripletBackend:
    options: dict[str, Any] = {"seed": args.seed, "num_hard_negatives": args.num_hard_negatives}
    if args.backend == "rules":
        if args.model or args.captions != "world":
            raise ValueError("the rules backend writes triplets of world scenes only: use --captions world and no --model")
        return get_backend("rules", **options)
    if not args.model:
        raise ValueError(f"the {args.backend} backend needs --model")
    options.update(
        model=args.model,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        limits=limits,
    )
    if args.backend == "transformers":
        options.update(dtype=args.dtype, device_map=args.device_map, batch_size=args.batch_size)
    else:
        options.update(
            base_url=args.base_url,
            concurrency=args.concurrency,
            max_requests=args.max_requests,
            max_retries=args.max_retries,
            timeout=args.timeout,
            json_mode=args.json_mode,
        )
    return get_backend(args.backend, **options)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error, 130 when interrupted)."""
    args = _parser().parse_args(argv)
    try:
        check_output_path(str(args.output), "--output", folder=True)
        limits = Limits(args.max_modification_words, args.max_caption_words)
        captions = open_captions(
            args.captions,
            image_column=args.image_column,
            caption_column=args.caption_column,
            id_column=args.id_column,
            split=args.split,
            num_scenes=args.num_scenes,
            seed=args.seed,
        )
        backend = _backend(args, limits)
        state, status = generate_triplets(
            backend,
            captions,
            args.output,
            variants=args.variants,
            limits=limits,
            resume=args.resume,
            limit=args.limit,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            flush_seconds=args.flush_seconds,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(f"interrupted: finished rows are in {args.output}; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as err:
        return fail(err)
    print(f"{status}: {state.summary()}; {len(state.shards)} shards in {args.output}")
    if status == "stopped":
        print("the request cap was reached: rerun with --resume (and a higher --max-requests) to continue")
    elif state.accepted == 0:
        return fail(
            ValueError(
                f"no triplet was accepted ({state.summary()}): see the reasons and raw answers in the shards of "
                f"{args.output}, and check the captions and the model"
            )
        )
    elif status == "source_exhausted":
        print(
            f"the captions ran out after {state.accepted} of the {args.limit} triplets asked by --limit: for more, "
            "start a new --output with more captions (for the world, a larger --num-scenes) or more --variants"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
