"""The evaluation harness: every method of the registry on a benchmark split (CIRR, FashionIQ, CIRCO, GeneCIS
or the built-in world), with one protocol per benchmark.

Gallery embeddings go through `retrieval.embed_gallery`, so they are computed once per (encoder, image
set), stream in resumable chunks and are reused by every later run and every split sharing the gallery.
A split whose queries know their target's caption (the world) also gets an `oracle` row; one whose queries
carry edit types gets Recall@1 per type. Settings a method can tune are chosen on a validation split when
one is given, otherwise they follow the benchmark (the method's paper).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..encoding import encode_texts
from ..io_utils import write_json
from ..methods import DEFAULT_METHOD_NAMES, METHOD_NAMES, CIRMethod, build_method
from ..retrieval import ImageFiles, embed_gallery
from ..similarity import image_scores
from .cir_data import CIRSplit, check_images
from .scoring import compute_metrics, top_k_ids
from .submissions import CIRCO_SIZE, CIRR_RECALL_SIZE, write_circo_submission, write_cirr_submissions

logger = logging.getLogger(__name__)

ORACLE = "oracle"
TUNING_METRIC = "recall@1"
RANKING_SIZE = 50
SUBMISSION_SIZES = {"cirr": CIRR_RECALL_SIZE, "circo": CIRCO_SIZE}


class SplitImages:
    """A gallery source over image ids of a [`CIRSplit`], opened (and cropped) as the benchmark prescribes."""

    def __init__(self, split: CIRSplit, ids: Sequence[str]):
        self.split = split
        self.ids = list(ids)

    def image(self, index: int) -> Image.Image:
        image_id = self.ids[index]
        try:
            return self.split.open_image(image_id)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            where = self.split.image_paths.get(image_id, "rendered")
            raise ValueError(f"image {image_id!r} ({where}): {err}") from None

    def content_key(self) -> str:
        """The image files' key (paths, sizes, modification times) and each image's crop box, or the renderer's key
        and the ids."""
        if self.split.renderer is not None:
            return json.dumps([self.split.renderer_key, self.ids])
        files = ImageFiles([self.split.image_paths[image_id] for image_id in self.ids], self.ids)
        return json.dumps([files.content_key(), [self.split.crop_boxes.get(image_id) for image_id in self.ids]])


@dataclass
class SplitEmbeddings:
    """A split's frozen embeddings: gallery (G, D), or (G, K, D) for a multi-vector encoder (BLIP-2); one pooled
    reference row (V, as the model pools a multi-vector encoder's vectors) and one modification row per query."""

    gallery: torch.Tensor
    references: torch.Tensor
    texts: torch.Tensor


def _embed_images(model, split: CIRSplit, ids: Sequence[str], cache_dir: Path, options: Mapping) -> torch.Tensor:
    """Embeddings of `ids` in that order, through the resumable gallery cache."""
    if not ids:
        return torch.empty(0, model.config.embed_dim)
    return embed_gallery(model, SplitImages(split, ids), cache_dir, **options).embeddings.float()


def embed_split(model, split: CIRSplit, cache_dir: str | os.PathLike, options: Mapping) -> SplitEmbeddings:
    """Embed a split's gallery, references (plain gallery images reuse the gallery's row) and modification texts."""
    gallery = _embed_images(model, split, split.gallery, Path(cache_dir), options)
    reusable = {image_id for image_id in split.gallery if image_id not in split.crop_boxes}
    extra = [image_id for image_id in split.reference_ids if image_id not in reusable]
    extra_embeds = _embed_images(model, split, extra, Path(cache_dir), options)
    extra_rows = {image_id: row for row, image_id in enumerate(extra)}
    rows = [
        gallery[split.gallery_index[query.reference]]
        if query.reference in reusable
        else extra_embeds[extra_rows[query.reference]]
        for query in split.queries
    ]
    references = torch.stack(rows) if rows else torch.empty(0, *gallery.shape[1:])
    progress = options.get("progress", True) and "embedding texts"
    texts = encode_texts(model, split.texts, batch_size=options["batch_size"], progress=progress)
    return SplitEmbeddings(gallery, model.pool_image(references, texts), texts)


def check_split(split: CIRSplit, predictions_dir: object) -> None:
    """Refuse, before any model work, a split without queries, a split without public targets (CIRR test1,
    CIRCO test) and no predictions folder, and submission files the gallery is too small for."""
    if not split.queries:
        raise ValueError(f"{split.annotation_file}: no queries")
    if not split.has_targets and predictions_dir is None:
        raise ValueError(
            f"{split.name} has no public targets: pass a predictions folder (--save-predictions DIR) "
            "to write its submission files"
        )
    if predictions_dir is not None and split.benchmark in SUBMISSION_SIZES:
        candidates = len(split.gallery) - split.remove_reference
        if candidates < SUBMISSION_SIZES[split.benchmark]:
            raise ValueError(
                f"{split.name}: the gallery has {len(split.gallery)} images, too few for submission files that "
                f"rank {SUBMISSION_SIZES[split.benchmark]} per query"
            )


def save_predictions(split: CIRSplit, scores: np.ndarray, folder: Path) -> list[Path]:
    """The benchmark's submission files (CIRR's two files, CIRCO's one), else each query's top 50 ids."""
    if split.benchmark == "cirr":
        return list(write_cirr_submissions(split, scores, folder))
    if split.benchmark == "circo":
        return [write_circo_submission(split, scores, folder / f"circo_{split.split}.json")]
    sizes = [len(query.gallery) for query in split.queries] if split.has_query_galleries else [len(split.gallery)]
    rankings = top_k_ids(split, scores, min(RANKING_SIZE, *sizes))
    path = folder / f"{split.name.replace(' ', '_')}_rankings.json"
    write_json(path, {query.query_id: ranking for query, ranking in zip(split.queries, rankings)})
    return [path]


def recall_at_1_by_edit_type(split: CIRSplit, scores: np.ndarray) -> dict[str, float]:
    """Recall@1 (percent) of the (queries, gallery) `scores` per edit type of the split's queries."""
    rows = defaultdict(list)
    for row, query in enumerate(split.queries):
        rows[query.edit_type].append(row)
    result = {}
    for edit_type, indices in sorted(rows.items()):
        part = replace(split, queries=[split.queries[i] for i in indices])
        result[edit_type] = compute_metrics(part, scores[indices])["recall@1"]
    return result


def reference_images(method: CIRMethod, split: CIRSplit) -> list[Image.Image] | None:
    """Each query's reference image (cropped as the benchmark prescribes) for a method that `needs_images`."""
    if not method.needs_images:
        return None
    return [SplitImages(split, [query.reference]).image(0) for query in split.queries]


def tune_method(model, method: CIRMethod, validation: CIRSplit, embeddings: SplitEmbeddings) -> CIRMethod:
    """`method` with the settings of its search space that score the best Recall@1 on `validation`
    (the first such setting on ties)."""
    names = list(method.search_space)
    best, best_recall = method, -1.0
    for values in product(*(method.search_space[name] for name in names)):
        candidate = method.with_settings(**dict(zip(names, values)))
        scores = candidate.score(
            model, embeddings.references, embeddings.texts, embeddings.gallery, validation.texts,
            reference_images(candidate, validation),
        ).numpy()  # fmt: skip
        recall = compute_metrics(validation, scores)[TUNING_METRIC]
        if recall > best_recall:
            best, best_recall = candidate, recall
    return best


def resolve_methods(
    model,
    split: CIRSplit,
    names: Sequence[str],
    settings: Mapping[str, Mapping] | None,
    validation: CIRSplit | None,
    cache_dir: Path,
    options: Mapping,
) -> tuple[dict[str, CIRMethod], dict[str, str]]:
    """The methods to run and how each got its settings: `given` (the caller's), `validation` (tuned on the
    validation split) or `benchmark` (the method's paper for this benchmark)."""
    settings = settings or {}
    unknown = [name for name in [*names, *settings] if name not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHOD_NAMES)}")
    methods, origins = {}, {}
    validation_embeddings = None
    for name in names:
        method = build_method(name, split.benchmark, **settings.get(name, {}))
        origins[name] = "given" if settings.get(name) else "benchmark"
        if validation is not None and method.search_space and not settings.get(name):
            if validation_embeddings is None:
                quiet = {**options, "progress": False}
                validation_embeddings = embed_split(model, validation, cache_dir, quiet)
            method, origins[name] = tune_method(model, method, validation, validation_embeddings), "validation"
        methods[name] = method
    return methods, origins


def evaluate_split(
    model,
    split: CIRSplit,
    methods: Sequence[str] = DEFAULT_METHOD_NAMES,
    *,
    cache_dir: str | os.PathLike,
    method_settings: Mapping[str, Mapping] | None = None,
    validation: CIRSplit | None = None,
    predictions_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> dict:
    """Each method's metrics (percent) on `split`; with `predictions_dir`, also its ranked lists /
    submission files under `predictions_dir/<method>/`.

    `method_settings` fixes settings by method (`{"slerp": {"alpha": 0.7}}`); a method with tunable
    settings and none given is tuned on `validation` when given, else runs with its benchmark defaults.
    Missing image files fail before any model work. Returns `{"benchmark", "split", "category", "seed",
    "queries", "gallery_size", "settings": {method: {..., "chosen_by"}}, "methods": {method: metrics}}`,
    plus `recall@1_by_edit_type` where queries carry edit types; metrics are empty for a split without
    public targets (CIRR test1, CIRCO test), whose submission files are then the result.
    """
    check_split(split, predictions_dir)
    check_images(split)
    cache_dir = Path(cache_dir)
    options = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
    resolved, origins = resolve_methods(model, split, methods, method_settings, validation, cache_dir, options)
    embeddings = embed_split(model, split, cache_dir, options)
    report: dict = {
        "benchmark": split.benchmark,
        "split": split.split,
        "category": split.category,
        "seed": split.seed,
        "queries": len(split.queries),
        "gallery_size": len(split.gallery),
        "settings": {name: {**method.settings(), "chosen_by": origins[name]} for name, method in resolved.items()},
        "methods": {},
    }
    all_scores = {}
    for name, method in resolved.items():
        all_scores[name] = method.score(
            model, embeddings.references, embeddings.texts, embeddings.gallery, split.texts,
            reference_images(method, split),
        ).numpy()  # fmt: skip
        if predictions_dir is not None:
            for path in save_predictions(split, all_scores[name], Path(predictions_dir) / name):
                logger.info(f"{name}: wrote {path}")
    if split.has_targets and all(query.target_caption is not None for query in split.queries):
        oracle = encode_texts(model, [query.target_caption for query in split.queries], batch_size=batch_size, progress=False)
        all_scores[ORACLE] = image_scores(oracle, embeddings.gallery).numpy()
    report["methods"] = {name: compute_metrics(split, scores) for name, scores in all_scores.items()}
    if split.has_targets and all(query.edit_type is not None for query in split.queries):
        report["recall@1_by_edit_type"] = {
            name: recall_at_1_by_edit_type(split, scores) for name, scores in all_scores.items()
        }
    return report


def average_reports(reports: Mapping[str, dict]) -> dict:
    """One report for several FashionIQ categories or GeneCIS tasks: `<name>/<metric>` keys plus
    `average/<metric>`, the mean over them."""
    first = next(iter(reports.values()))
    splits = {report["split"] for report in reports.values()}
    combined = {"benchmark": first["benchmark"], "split": splits.pop() if len(splits) == 1 else None}
    combined |= {"category": None, "seed": first["seed"], "settings": first["settings"]}
    combined["queries"] = sum(report["queries"] for report in reports.values())
    combined["gallery_size"] = sum(report["gallery_size"] for report in reports.values())
    combined["methods"] = {}
    for method in first["methods"]:
        per_category = {category: report["methods"][method] for category, report in reports.items()}
        metrics = {f"{category}/{key}": value for category, values in per_category.items() for key, value in values.items()}
        for key in first["methods"][method]:
            mean = sum(values[key] for values in per_category.values()) / len(per_category)
            metrics[f"average/{key}"] = round(mean, 2)
        combined["methods"][method] = metrics
    return combined


def metrics_table(methods: Mapping[str, Mapping[str, float]]) -> str:
    """Methods' metrics as a plain-text table (one row per method)."""
    keys = list(dict.fromkeys(key for metrics in methods.values() for key in metrics))
    if not keys:
        return "no metrics (the split has no public targets)"
    width = max(12, *(len(key) + 2 for key in keys))
    lines = [f"{'method':<8}" + "".join(f"{key:>{width}}" for key in keys)]
    for name, metrics in methods.items():
        cells = (f"{metrics[key]:>{width}.2f}" if key in metrics else f"{'-':>{width}}" for key in keys)
        lines.append(f"{name:<8}" + "".join(cells))
    return "\n".join(lines)


def settings_lines(settings: Mapping[str, Mapping]) -> str:
    """One line per method: the settings it ran with and how they were chosen."""
    lines = []
    for name, values in settings.items():
        shown = ", ".join(f"{key}={value}" for key, value in values.items() if key != "chosen_by")
        lines.append(f"{name:<8}{shown or '-'}  ({values.get('chosen_by', 'given')})")
    return "\n".join(lines)


__all__ = [
    "ORACLE",
    "SplitEmbeddings",
    "SplitImages",
    "average_reports",
    "check_split",
    "embed_split",
    "evaluate_split",
    "metrics_table",
    "recall_at_1_by_edit_type",
    "resolve_methods",
    "save_predictions",
    "settings_lines",
    "tune_method",
]
