"""Evaluation-server files for CIRR and CIRCO test splits, and a scorer for such files on val.

CIRR's server takes two files, `{"version": "rc2", "metric": "recall", "<pairid>": [50 names]}` and
`{"version": "rc2", "metric": "recall_subset", "<pairid>": [3 names]}`; CIRCO's takes
`{"<query id>": [50 image ids]}`. Files are written as compact JSON (CIRR's server accepts at most
5 MB) through a temporary file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ..io_utils import write_text_atomic
from ..json_files import AnnotationError, read_json
from .cir_data import CIRQuery, CIRSplit
from .circo import read_circo_queries
from .cirr import VERSION, read_cirr_queries
from .metrics import ranking_map_at_k, ranking_recall_at_k
from .scoring import PROTOCOLS, named, top_k_ids, with_cirr_average

CIRR_RECALL_SIZE = 50
CIRR_SUBSET_SIZE = 3
CIRCO_SIZE = 50
SHOWN = 3

Check = Callable[[CIRQuery, list[str]], str | None]


def _write(path: Path, payload: dict[str, object]) -> Path:
    write_text_atomic(Path(path), json.dumps(payload, separators=(",", ":")) + "\n")
    return Path(path)


def _require(split: CIRSplit, benchmark: str) -> None:
    if split.benchmark != benchmark:
        raise ValueError(f"expected a {benchmark} split, got {split.benchmark}")


def write_cirr_submissions(split: CIRSplit, scores: object, folder: Path) -> tuple[Path, Path]:
    """Write `cirr_<split>_recall.json` (top 50, reference removed) and `cirr_<split>_recall_subset.json`
    (top 3 of img_set minus the reference) into `folder`; returns both paths."""
    _require(split, "cirr")
    files = []
    for metric, size, within_subset in (("recall", CIRR_RECALL_SIZE, False), ("recall_subset", CIRR_SUBSET_SIZE, True)):
        rankings = top_k_ids(split, scores, size, within_subset)
        payload = {"version": VERSION, "metric": metric}
        payload |= {query.query_id: ranking for query, ranking in zip(split.queries, rankings)}
        files.append(_write(Path(folder) / f"cirr_{split.split}_{metric}.json", payload))
    return files[0], files[1]


def write_circo_submission(split: CIRSplit, scores: object, path: Path) -> Path:
    """Write CIRCO's `{"<query id>": [50 image ids]}` (integer ids, reference kept) to `path`."""
    _require(split, "circo")
    rankings = top_k_ids(split, scores, CIRCO_SIZE)
    return _write(path, {query.query_id: [int(i) for i in ranking] for query, ranking in zip(split.queries, rankings)})


def _some(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return ", ".join(repr(i) for i in ids[:SHOWN]) + more


def _header(file: Path, data: dict[str, object], metric: str) -> None:
    for name, expected in (("version", VERSION), ("metric", metric)):
        if data.get(name) != expected:
            raise AnnotationError(file, f"must be {expected!r}, got {data.get(name)!r}", field=name)


def _cirr_id(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _circo_id(value: object) -> str | None:
    """CIRCO ids are integers; the official scorer also reads digit strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return str(int(value)) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def _object(file: Path) -> dict[str, object]:
    data = read_json(file)
    if not isinstance(data, dict):
        raise AnnotationError(file, f"expected a JSON object keyed by query id, got {type(data).__name__}")
    return data


def _rankings(
    file: Path,
    data: dict[str, object],
    queries: Sequence[CIRQuery],
    size: int,
    as_id: Callable[[object], str | None],
    check: Check | None = None,
) -> list[list[str]]:
    """Each query's ranked ids from a submission object, after validating every entry."""
    by_id = {query.query_id: query for query in queries}
    unknown = [key for key in data if key not in by_id]
    if unknown:
        raise AnnotationError(file, f"unknown query ids: {_some(unknown)}")
    missing = [query_id for query_id in by_id if query_id not in data]
    if missing:
        raise AnnotationError(file, f"missing queries: {_some(missing)}")
    rankings = []
    for query in queries:
        value = data[query.query_id]
        ids = [as_id(item) for item in value] if isinstance(value, list) else [None]
        problem = _ranking_problem(ids, value, size) or (check(query, ids) if check else None)
        if problem:
            raise AnnotationError(file, problem, entry_id=query.query_id)
        rankings.append(ids)
    return rankings


def _ranking_problem(ids: list[str | None], value: object, size: int) -> str | None:
    if not isinstance(value, list) or None in ids:
        return f"expected a list of image ids, got {value!r:.200}"
    if len(ids) != size:
        return f"has {len(ids)} entries, expected {size}"
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    return f"lists {_some(duplicates)} more than once" if duplicates else None


def _no_reference(query: CIRQuery, ids: list[str]) -> str | None:
    return f"ranks its reference image {query.reference!r}" if query.reference in ids else None


def _inside_subset(query: CIRQuery, ids: list[str]) -> str | None:
    outside = [i for i in ids if i not in query.subset or i == query.reference]
    return f"ranks images outside img_set minus the reference: {_some(outside)}" if outside else None


def _cirr_file(file: Path, metric: str, queries: Sequence[CIRQuery], size: int, check: Check) -> list[list[str]]:
    data = _object(file)
    _header(file, data, metric)
    body = {key: value for key, value in data.items() if key not in ("version", "metric")}
    return _rankings(file, body, queries, size, _cirr_id, check)


def _score_cirr(annotations: Path, predictions: Path, subset_predictions: Path | None) -> dict[str, float]:
    queries = read_cirr_queries(annotations, with_targets=True)
    targets = [query.target for query in queries]
    protocol = PROTOCOLS["cirr"]
    rankings = _cirr_file(predictions, "recall", queries, CIRR_RECALL_SIZE, _no_reference)
    metrics = named("recall", ranking_recall_at_k(rankings, targets, protocol.recall_ks))
    if subset_predictions is not None:
        subsets = _cirr_file(subset_predictions, "recall_subset", queries, CIRR_SUBSET_SIZE, _inside_subset)
        metrics |= named("recall_subset", ranking_recall_at_k(subsets, targets, protocol.subset_ks))
    return with_cirr_average(metrics)


def _score_circo(annotations: Path, predictions: Path) -> dict[str, float]:
    queries = read_circo_queries(annotations, with_targets=True)
    protocol = PROTOCOLS["circo"]
    rankings = _rankings(predictions, _object(predictions), queries, CIRCO_SIZE, _circo_id)
    metrics = named("map", ranking_map_at_k(rankings, [query.positives for query in queries], protocol.map_ks))
    targets = [query.target for query in queries]
    return metrics | named("recall", ranking_recall_at_k(rankings, targets, protocol.recall_ks))


def score_submission(
    benchmark: str, annotations: Path, predictions: Path, subset_predictions: Path | None = None
) -> dict[str, float]:
    """Score server files against an annotation file with targets (CIRR val captions, CIRCO val annotations).

    Returns the keys of `scoring.compute_metrics`: CIRR recall@K (and recall_subset@K with
    `subset_predictions`), CIRCO map@K and recall@K. Raises ValueError naming the file and the offending
    query for malformed JSON, a repeated key, a wrong version/metric header, unknown or missing queries,
    a ranking of the wrong length or with repeats, and (CIRR) a ranking holding the reference or, for
    the subset file, images outside img_set minus the reference.
    """
    if benchmark == "cirr":
        return _score_cirr(Path(annotations), Path(predictions), subset_predictions)
    if benchmark != "circo":
        raise ValueError(f"benchmark must be 'cirr' or 'circo', got {benchmark!r}")
    if subset_predictions is not None:
        raise ValueError("CIRCO has no subset predictions")
    return _score_circo(Path(annotations), Path(predictions))
