"""Run every method of the harness on a standard benchmark split (CIRR, FashionIQ, CIRCO, GeneCIS).

Gallery embeddings go through `retrieval.embed_gallery`, so they are computed once per (encoder, image
set), stream in resumable chunks and are reused by every later run and every split sharing the gallery.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..encoding import encode_images, encode_texts
from ..io_utils import write_json
from ..methods import METHODS, compose_queries, scot_gallery_scores, slerp
from ..retrieval import ImageFiles, embed_gallery
from .cir_data import CIRSplit, check_images
from .scoring import compute_metrics, top_k_ids
from .submissions import CIRCO_SIZE, CIRR_RECALL_SIZE, write_circo_submission, write_cirr_submissions

logger = logging.getLogger(__name__)

DEFAULT_SLERP_ALPHA = 0.5
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
            raise ValueError(f"image {image_id!r} ({self.split.image_paths[image_id]}): {err}") from None

    def content_key(self) -> str:
        """The image files' key (paths, sizes, modification times) and each image's crop box."""
        files = ImageFiles([self.split.image_paths[image_id] for image_id in self.ids], self.ids)
        return json.dumps([files.content_key(), [self.split.crop_boxes.get(image_id) for image_id in self.ids]])


def _embed_images(model, split: CIRSplit, ids: Sequence[str], cache_dir: Path, options: Mapping) -> torch.Tensor:
    """Embeddings of `ids` in that order, through the resumable gallery cache."""
    if not ids:
        return torch.empty(0, model.config.embed_dim)
    gallery = embed_gallery(model, SplitImages(split, ids), cache_dir, **options)
    return gallery.embeddings


def _reference_embeds(model, split: CIRSplit, gallery: torch.Tensor, cache_dir: Path, options: Mapping) -> torch.Tensor:
    """One row per query: references that are plain gallery images reuse the gallery's row."""
    reusable = {image_id for image_id in split.gallery if image_id not in split.crop_boxes}
    extra = [image_id for image_id in split.reference_ids if image_id not in reusable]
    extra_embeds = _embed_images(model, split, extra, cache_dir, options)
    extra_rows = {image_id: row for row, image_id in enumerate(extra)}
    rows = [
        gallery[split.gallery_index[query.reference]]
        if query.reference in reusable
        else extra_embeds[extra_rows[query.reference]]
        for query in split.queries
    ]
    return torch.stack(rows)


def _reference_regions(model, split: CIRSplit, options: Mapping) -> torch.Tensor:
    """(queries, G*G, D) grid-region embeddings of each query's reference, for a model with grid regions."""
    references = list(dict.fromkeys(query.reference for query in split.queries))
    images = SplitImages(split, references)
    batch_size = options["batch_size"]
    chunks = []
    for start in range(0, len(references), batch_size):
        batch = [images.image(i) for i in range(start, min(start + batch_size, len(references)))]
        chunks.append(encode_images(model, batch, batch_size=batch_size, progress=False, regions=True))
    rows = {image_id: row for row, image_id in enumerate(references)}
    return torch.cat(chunks)[[rows[query.reference] for query in split.queries]]


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


def evaluate_split(
    model,
    split: CIRSplit,
    methods: Sequence[str] = METHODS,
    *,
    cache_dir: str | os.PathLike,
    predictions_dir: str | os.PathLike | None = None,
    slerp_alpha: float = DEFAULT_SLERP_ALPHA,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> dict:
    """Each method's metrics (percent) on `split`; with `predictions_dir`, also its ranked lists /
    submission files under `predictions_dir/<method>/`.

    Missing image files fail before any model work. Returns `{"benchmark", "split", "category",
    "queries", "gallery_size", "slerp_alpha", "methods": {method: metrics}}`; metrics are empty for a
    split without public targets (CIRR test1, CIRCO test), whose submission files are then the result.
    """
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    check_split(split, predictions_dir)
    check_images(split)
    cache_dir = Path(cache_dir)
    options = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
    gallery = _embed_images(model, split, split.gallery, cache_dir, options)
    references = _reference_embeds(model, split, gallery, cache_dir, options)
    texts = encode_texts(model, split.texts, batch_size=batch_size, progress=progress and "embedding texts")
    report: dict = {
        "benchmark": split.benchmark,
        "split": split.split,
        "category": split.category,
        "queries": len(split.queries),
        "gallery_size": len(split.gallery),
        "slerp_alpha": slerp_alpha,
        "methods": {},
    }
    for method in methods:
        if method == "scot":
            regions = _reference_regions(model, split, options) if model.config.region_grid else None
            scores = scot_gallery_scores(model, references, texts, gallery.float(), regions).numpy()
        else:
            if method == "slerp":
                queries = slerp(references, texts, slerp_alpha)
            else:
                queries = compose_queries(method, model, references, texts)
            scores = (queries.float() @ gallery.float().T).numpy()
        report["methods"][method] = compute_metrics(split, scores)
        if predictions_dir is not None:
            for path in save_predictions(split, scores, Path(predictions_dir) / method):
                logger.info(f"{method}: wrote {path}")
    return report


def average_reports(reports: Mapping[str, dict]) -> dict:
    """One report for several FashionIQ categories or GeneCIS tasks: `<name>/<metric>` keys plus
    `average/<metric>`, the mean over them."""
    first = next(iter(reports.values()))
    splits = {report["split"] for report in reports.values()}
    combined = {"benchmark": first["benchmark"], "split": splits.pop() if len(splits) == 1 else None}
    combined |= {"category": None, "slerp_alpha": first["slerp_alpha"]}
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


__all__ = [
    "SplitImages",
    "average_reports",
    "evaluate_split",
    "metrics_table",
    "check_split",
    "save_predictions",
]
