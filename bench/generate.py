"""Throughput of the openai triplet backend: requests/s at several concurrencies.

The server is the local OpenAI-compatible server of `bench/llm_server.py`, which answers after a fixed
latency, so the rate should grow near-linearly with the concurrency (ideal: concurrency / latency) until
the client or the server runs out of CPU. Each run validates the answers as a real run does. Prints one
JSON object; --output also writes it to a file.

    python bench/generate.py [--latency 0.05] [--concurrency 1 8 64] [--requests-per-worker 8] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_server import FakeLLMServer  # noqa: E402

from modeling_scot.triplets.backend import CaptionRequest  # noqa: E402
from modeling_scot.triplets.openai_backend import OpenAIBackend  # noqa: E402


def measure(concurrency: int, latency: float, requests_per_worker: int, min_requests: int) -> dict:
    """Send concurrency * requests_per_worker (at least min_requests) requests; their rate and outcome."""
    count = max(concurrency * requests_per_worker, min_requests)
    requests = [CaptionRequest(f"img-{i}", f"{i}.jpg", f"a photo of object number {i}", 0) for i in range(count)]
    with FakeLLMServer(latency=latency) as server:
        backend = OpenAIBackend("bench", base_url=server.url, concurrency=concurrency, max_retries=0)
        started = time.perf_counter()
        attempts = backend.attempt(requests)
        seconds = time.perf_counter() - started
    rate = count / seconds
    ideal = concurrency / latency
    return {
        "concurrency": concurrency,
        "requests": count,
        "seconds": round(seconds, 3),
        "requests_per_s": round(rate, 1),
        "ideal_requests_per_s": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "accepted": sum(attempt.record is not None for attempt in attempts),
        "max_in_flight": server.max_in_flight,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per answer")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64], help="concurrencies to measure")
    parser.add_argument("--requests-per-worker", type=int, default=8, help="requests per concurrent worker")
    parser.add_argument("--min-requests", type=int, default=32, help="fewest requests per measurement")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.latency <= 0 or min(args.concurrency) < 1:
        parser.error("--latency must be > 0 and every --concurrency >= 1")
    report = {
        "benchmark": "openai backend requests/s against a local server with a fixed latency",
        "latency_s": args.latency,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": [measure(c, args.latency, args.requests_per_worker, args.min_requests) for c in args.concurrency],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
