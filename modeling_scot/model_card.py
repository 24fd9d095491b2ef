"""Model card (README.md) of a saved SCOT model, rendered from the `MODEL_CARD.md` template."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).with_name("MODEL_CARD.md")
README_NAME = "README.md"
BASE_TAGS = ["composed-image-retrieval", "zero-shot-composed-image-retrieval", "scot"]
TRAINING_FIELDS = ("num_triplets", "epochs", "batch_size", "learning_rate")
CONFIG_FIELDS = (
    "combiner_only",
    "combiner_dropout",
    "temperature",
    "learnable_temperature",
    "hard_negative_weight",
    "caption_negative_weight",
    "image_pooling",
    "scot_version",
)
DEFAULT_MODEL_NAME = "scot-model"
BENCHMARK_DATASETS = {  # benchmark -> (dataset type, display name)
    "cirr": ("cirr", "CIRR"),
    "fashioniq": ("fashion-iq", "FashionIQ"),
    "circo": ("circo", "CIRCO"),
    "genecis": ("genecis", "GeneCIS"),
    "world": ("scot-world", "SCOT world"),
}
EVAL_DEFAULTS = {"task_type": "image-feature-extraction", "task_name": "Zero-shot composed image retrieval"}


def _encoder_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    encoder_config = config.get("encoder_config")
    if not isinstance(encoder_config, Mapping):
        raise ValueError(
            f"config['encoder_config'] must be the encoder's config dict, got {type(encoder_config).__name__}"
        )
    return encoder_config


def _embed_dim(encoder_config: Mapping[str, Any]) -> int:
    """The encoder's joint embedding size, resolved as `ScotConfig.embed_dim` does."""
    for name in ("projection_dim", "hidden_size"):
        if isinstance(encoder_config.get(name), int):
            return encoder_config[name]
    hidden_size = (encoder_config.get("text_config") or {}).get("hidden_size")
    if not isinstance(hidden_size, int):
        raise ValueError("config['encoder_config'] has neither projection_dim nor text_config.hidden_size")
    return hidden_size


def _hub_id(name: str | None) -> str | None:
    """`name` when it is a valid Hub model id (not a local folder), else None."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _eval_result(row: EvalResult | Mapping[str, Any], index: int) -> EvalResult:
    if isinstance(row, EvalResult):
        return row
    if not isinstance(row, Mapping):
        raise ValueError(f"eval_results[{index}] must be an EvalResult or a dict, got {type(row).__name__}")
    fields = {**EVAL_DEFAULTS, **row}
    fields.setdefault("dataset_type", fields.get("dataset_name"))
    try:
        return EvalResult(**fields)
    except TypeError as err:
        raise ValueError(f"eval_results[{index}] is not a valid EvalResult: {err}") from err


def results_markdown(results: list[EvalResult]) -> str:
    """The card body's results table (empty string for no results)."""
    if not results:
        return ""
    lines = ["| Dataset | Split | Metric | Value |", "|---|---|---|---|"]
    for result in results:
        dataset = result.dataset_name + (f" ({result.dataset_config})" if result.dataset_config else "")
        metric = result.metric_name or result.metric_type
        lines.append(f"| {dataset} | {result.dataset_split or '-'} | {metric} | {result.metric_value} |")
    return "\n".join(lines)


def _template_values(config: Mapping[str, Any], repo_id: str | None, training: Mapping[str, Any]) -> dict[str, Any]:
    """Template variables; None values are left out so the template's fallbacks apply."""
    encoder_config = _encoder_config(config)
    embed_dim = _embed_dim(encoder_config)
    values = {
        "repo_id": repo_id,
        "encoder_name": config.get("encoder_name_or_path"),
        "encoder_type": encoder_config.get("model_type", "clip"),
        "embed_dim": embed_dim,
        "projection_dim": config.get("combiner_projection_dim") or 2 * embed_dim,
        "hidden_dim": config.get("combiner_hidden_dim") or 2 * embed_dim,
        **{name: config.get(name) for name in CONFIG_FIELDS},
        **{name: training.get(name) for name in TRAINING_FIELDS},
        "training_extra": {k: v for k, v in training.items() if k not in TRAINING_FIELDS and v is not None},
    }
    return {key: value for key, value in values.items() if value is not None}


def render_model_card(
    config: dict,
    *,
    repo_id: str | None = None,
    training: dict | None = None,
    eval_results: list | None = None,
    datasets: list[str] | None = None,
) -> str:
    """Render the README.md text of a SCOT model from its config (`ScotConfig.to_dict()`).

    `training` may hold num_triplets, epochs, batch_size, learning_rate and any other settings;
    `eval_results` holds `EvalResult`s or dicts of `EvalResult` fields (task_type and dataset_type
    may be omitted); `datasets` are the Hub ids of the training data. Raises FileNotFoundError when
    the template is not shipped next to this module.
    """
    if not TEMPLATE_PATH.is_file():
        raise FileNotFoundError(f"model card template not found: {TEMPLATE_PATH}")
    values = _template_values(config, repo_id, training or {})
    results = [_eval_result(row, index) for index, row in enumerate(eval_results or [])]
    card_data = ModelCardData(
        eval_results=results or None,
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=[*BASE_TAGS, values["encoder_type"]],
        datasets=list(datasets or []),
        base_model=_hub_id(values.get("encoder_name")),
        model_name=repo_id.split("/")[-1] if repo_id else (DEFAULT_MODEL_NAME if results else None),
    )
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE_PATH), results_markdown=results_markdown(results), **values
    )
    text = str(card)
    return text if text.endswith("\n") else text + "\n"


def write_model_card(
    save_directory: str | os.PathLike,
    config: dict,
    *,
    repo_id: str | None = None,
    training: dict | None = None,
    eval_results: list | None = None,
    datasets: list[str] | None = None,
) -> Path | None:
    """Write `README.md` into `save_directory` atomically; None when the card template is not shipped."""
    if not TEMPLATE_PATH.is_file():
        logger.info(f"no model card written: template {TEMPLATE_PATH} not found")
        return None
    text = render_model_card(config, repo_id=repo_id, training=training, eval_results=eval_results, datasets=datasets)
    target = Path(save_directory) / README_NAME
    _write_atomic(target, text)
    return target


def _metric_name(key: str) -> str:
    family, _, k = key.partition("@")
    names = {"recall": "Recall", "recall_subset": "Recall_subset", "map": "mAP"}
    return f"{names.get(family, family)}@{k}" if k else {"avg": "Avg (Recall@5 + Recall_subset@1) / 2"}.get(key, key)


def eval_results_from_report(report: Mapping[str, Any], method: str = "scot") -> list[EvalResult]:
    """`EvalResult`s of one method from a `scot eval` metrics JSON (FashionIQ's `<category>/<metric>` keys
    become dataset configs; GeneCIS tasks and world seeds too)."""
    benchmark = report.get("benchmark")
    if benchmark not in BENCHMARK_DATASETS:
        raise ValueError(f"report has benchmark {benchmark!r}; expected one of {sorted(BENCHMARK_DATASETS)}")
    methods = report.get("methods")
    if not isinstance(methods, Mapping) or method not in methods:
        raise ValueError(f"report has no metrics for method {method!r} (has {sorted(methods or {})})")
    dataset_type, dataset_name = BENCHMARK_DATASETS[benchmark]
    split, config = report.get("split"), report.get("category")
    if benchmark == "genecis":
        split, config = "test", report.get("split")
    elif benchmark == "world":
        config = f"seed-{report.get('seed')}"
    if not methods[method]:
        raise ValueError(f"report has no metrics for method {method!r} (a split without public targets?)")
    results = []
    for key, value in methods[method].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {key!r} of method {method!r} is {value!r}, not a finite number")
        category, _, metric = key.rpartition("/")
        results.append(
            EvalResult(
                **EVAL_DEFAULTS,
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_config=category or config,
                dataset_split=split,
                metric_type=metric,
                metric_name=_metric_name(metric),
                metric_value=value,
            )
        )
    return results


def _result_key(result: EvalResult) -> tuple:
    return (result.dataset_type, result.dataset_config, result.dataset_split, result.metric_type)


def _replace_section(text: str, heading: str, body: str) -> str:
    start = text.find(f"\n{heading}\n")
    if start < 0:
        return text.rstrip("\n") + f"\n\n{heading}\n\n{body}\n"
    end = text.find("\n## ", start + len(heading) + 2)
    end = len(text) if end < 0 else end
    return f"{text[:start]}\n{heading}\n\n{body}\n{text[end:]}"


def add_eval_results(model_dir: str | os.PathLike, results: list[EvalResult]) -> Path:
    """Merge `results` into the `model-index` of the model card (README.md) in `model_dir` and refresh its
    Evaluation table; a result for the same dataset, config, split and metric replaces the old one."""
    path = Path(model_dir) / README_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no model card {path}: save the model with save_pretrained first")
    card = ModelCard.load(path)
    merged = {_result_key(result): result for result in [*(card.data.eval_results or []), *results]}
    card.data.eval_results = list(merged.values())
    card.data.model_name = card.data.model_name or Path(model_dir).resolve().name
    text = _replace_section(str(card), "## Evaluation", results_markdown(card.data.eval_results))
    _write_atomic(path, text)
    return path


def _write_atomic(target: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


__all__ = ["add_eval_results", "eval_results_from_report", "render_model_card", "results_markdown", "write_model_card"]
