"""The built-in world's compositional benchmark as a [`CIRSplit`], scored by the same harness as CIRR.

Image ids are scene ids, rendered on demand; each query knows its edit type (for per-type recall) and its
target's true caption (for the oracle row). The validation split of a test seed is another benchmark of the
same world, drawn from another random stream: settings are tuned there, never on the test split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from ..methods import DEFAULT_METHOD_NAMES
from ..world import build_benchmark, caption, render_scene, scene_from_id, scene_id
from .cir_data import CIRQuery, CIRSplit
from .runner import evaluate_split

VALIDATION_QUERIES = 300
IMAGE_SIZE = 64
MAX_QUERIES = 50_000
"""Most queries a world benchmark is built with: building takes about 2.5 ms per query on one core, and the
gallery holds about 3 scenes per query."""


def check_num_queries(num_queries: int, name: str = "num_queries") -> None:
    """Raise a ValueError naming `name` (the option it came from) unless 1 <= num_queries <= MAX_QUERIES."""
    if not 1 <= num_queries <= MAX_QUERIES:
        raise ValueError(
            f"{name} must be between 1 and {MAX_QUERIES} (the world benchmark's largest size), got {num_queries}"
        )


def validation_seed(seed: int) -> int:
    """The seed of the validation benchmark of a test seed: another stream (test seeds are >= 0)."""
    return -1 - seed


def _render(image_size: int, image_id: str):
    return render_scene(scene_from_id(image_id), image_size)


def load_world(seed: int, num_queries: int = 1000, *, split: str = "test", image_size: int = IMAGE_SIZE) -> CIRSplit:
    """The world benchmark of `seed` (`num_queries` queries, at most `MAX_QUERIES`) as a split named `split`."""
    check_num_queries(num_queries)
    benchmark = build_benchmark(seed, num_queries)
    names = [scene_id(scene) for scene in benchmark.gallery]
    queries = [
        CIRQuery(
            query_id=str(position),
            reference=names[query.reference_id],
            text=query.modification,
            target=names[query.target_id],
            positives=(names[query.target_id],),
            subset=tuple(names[member] for member in query.subset_ids),
            target_caption=caption(query.target),
            edit_type=query.edit_type,
        )
        for position, query in enumerate(benchmark.queries)
    ]
    return CIRSplit(
        benchmark="world",
        split=split,
        queries=queries,
        gallery=tuple(names),
        image_paths={},
        remove_reference=True,
        has_targets=True,
        annotation_file=Path(f"<world seed {seed}, {num_queries} queries>"),
        renderer=partial(_render, image_size),
        renderer_key=json.dumps(["world", seed, num_queries, image_size]),
        seed=seed,
    )


def load_world_validation(seed: int, num_queries: int = VALIDATION_QUERIES) -> CIRSplit:
    """The validation split that belongs to test seed `seed`."""
    return load_world(validation_seed(seed), num_queries, split="validation")


def evaluate_world(
    model,
    seed: int,
    methods: tuple[str, ...] = DEFAULT_METHOD_NAMES,
    *,
    cache_dir,
    num_queries: int = 1000,
    batch_size: int = 64,
    progress: bool = True,
    method_settings: Mapping[str, Mapping] | None = None,
) -> dict:
    """[`evaluate_split`] on the world benchmark of `seed`, settings tuned on its validation split (those not
    fixed by `method_settings`)."""
    return evaluate_split(
        model,
        load_world(seed, num_queries),
        methods,
        cache_dir=cache_dir,
        method_settings=method_settings,
        validation=load_world_validation(seed),
        batch_size=batch_size,
        progress=progress,
    )


__all__ = [
    "MAX_QUERIES",
    "VALIDATION_QUERIES",
    "check_num_queries",
    "evaluate_world",
    "load_world",
    "load_world_validation",
    "validation_seed",
]
