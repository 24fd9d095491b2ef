"""Numbered JSONL shards of generation attempts with a manifest: written atomically, read back to resume.

Every request of a run gets one row, accepted or rejected, in request order: row `position` n is the
n-th request. A shard holds consecutive rows and is written to a temp file that is renamed into place, so a
shard is either complete or absent. The shards are the truth: resuming streams them to find the next
position, the counts and the de-duplication keys, and continues from there; `manifest.json` (rewritten
atomically after each shard) records the run's settings, which a resumed run must match, and a summary.
A lock file keeps a second run from writing to the same folder at the same time.
"""

from __future__ import annotations

import fcntl
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..io_utils import write_json, write_text_atomic
from .validation import Attempt, Deduplicator

FORMAT = "scot-triplet-shards"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
ACCEPTED = "accepted"
REJECTED = "rejected"
_TEMP_NAME = re.compile(r"(shard-\d{5,}\.jsonl|manifest\.json)\.tmp")


def shard_name(index: int) -> str:
    """The file name of shard `index`."""
    return f"shard-{index:05d}.jsonl"


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value))


def attempt_row(position: int, attempt: Attempt, settings: dict[str, Any]) -> dict[str, Any]:
    """The shard row of the `position`-th request: request, outcome, raw answer and the generator's settings."""
    request, record = attempt.request, attempt.record
    return {
        "position": position,
        "source_id": request.source_id,
        "image": request.image,
        "caption": request.caption,
        "variant": request.variant,
        "status": ACCEPTED if record is not None else REJECTED,
        "reason": attempt.reason,
        "detail": attempt.detail,
        "modification": record.modification if record is not None else None,
        "modified_caption": record.modified_caption if record is not None else None,
        "hard_negatives": list(record.hard_negatives) if record is not None else [],
        "raw_response": attempt.raw_response,
        "generator": settings["backend"],
        "model": settings["model"],
        "prompt_version": settings["prompt_version"],
        "temperature": settings["temperature"],
        "seed": settings["seed"],
    }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a shard folder, or None when it has none."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a manifest of triplet shards (format {FORMAT!r})")
    return manifest


def shard_paths(folder: Path) -> list[Path]:
    """The shard files of `folder` in order; they must be numbered 0, 1, 2, ... without gaps."""
    found = sorted(path.name for path in folder.glob("shard-*.jsonl"))
    expected = [shard_name(index) for index in range(len(found))]
    if found != expected:
        missing = next(name for name, want in zip(found + [""], expected) if name != want)
        raise ValueError(f"{folder}: shard files are not numbered without gaps ({missing or expected[-1]} is missing)")
    return [folder / name for name in found]


_NONE = type(None)
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "position": (int,),
    "source_id": (str,),
    "image": (str,),
    "caption": (str,),
    "variant": (int,),
    "status": (str,),
    "reason": (str, _NONE),
    "detail": (str,),
    "modification": (str, _NONE),
    "modified_caption": (str, _NONE),
    "hard_negatives": (list,),
    "raw_response": (str, _NONE),
    "generator": (str,),
    "model": (str, _NONE),
    "prompt_version": (str,),
    "temperature": (int, float, _NONE),
    "seed": (int, _NONE),
}
"""The fields of a shard row and the JSON types each may hold (see [`attempt_row`])."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_row(row: Any, where: str, position: int) -> dict[str, Any]:
    """`row` when it is a well-formed shard row of request `position`; raises ValueError naming the field otherwise."""
    if not isinstance(row, dict):
        raise ValueError(f"{where} is a JSON {_type_name(row)}, not an object")
    for name, types in ROW_FIELDS.items():
        if name not in row:
            raise ValueError(f"{where}: field {name!r} is missing")
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if kind is _NONE else kind.__name__ for kind in types)
            raise ValueError(f"{where}: field {name!r} is {_type_name(value)}, expected {expected}")
    if row["position"] != position:
        raise ValueError(f"{where}: field 'position' is {row['position']}, expected {position} (rows run in request order)")
    if row["status"] not in (ACCEPTED, REJECTED):
        raise ValueError(f"{where}: field 'status' is {row['status']!r}, expected {ACCEPTED!r} or {REJECTED!r}")
    needed = ("modification", "modified_caption") if row["status"] == ACCEPTED else ("reason",)
    for name in needed:
        if row[name] is None:
            raise ValueError(f"{where}: field {name!r} is null in a row with status {row['status']!r}")
    for index, value in enumerate(row["hard_negatives"]):
        if not isinstance(value, str):
            raise ValueError(f"{where}: field 'hard_negatives' item {index} is {_type_name(value)}, expected str")
    return row


def _rows_of(path: Path, start: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, row) of every row of the shard `path`, whose first row is request `start`."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}: line {number}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise ValueError(f"{where} is not UTF-8 text: {err}") from err
            except (json.JSONDecodeError, RecursionError) as err:
                raise ValueError(f"{where} is not valid JSON: {err}") from err
            yield where, _check_row(row, where, start + number - 1)


def iter_located_rows(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream (location, row) for every row of the shards of `folder`, checking each row's fields and that
    positions run 0, 1, 2, ...; the location names the shard file and line."""
    position = 0
    for path in shard_paths(folder):
        for located in _rows_of(path, position):
            position += 1
            yield located


def iter_shard_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """Stream every row of the shards of `folder` (checked as in [`iter_located_rows`])."""
    for _, row in iter_located_rows(folder):
        yield row


@dataclass
class ShardState:
    """What the shards of a folder hold: their summaries, the next request position, counts and seen triplets."""

    shards: list[dict[str, Any]] = field(default_factory=list)
    next_position: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    seen: Deduplicator = field(default_factory=Deduplicator)

    def count(self, row: dict[str, Any]) -> None:
        """Count `row` and remember its triplet when accepted (remembering twice is harmless)."""
        self.next_position = row["position"] + 1
        if row["status"] == ACCEPTED:
            self.accepted += 1
            self.seen.add(row["source_id"], row["modification"], row["modified_caption"])
        else:
            self.rejected[row["reason"]] += 1

    def summary(self) -> str:
        """One line: accepted, rejected by reason."""
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.rejected.most_common())
        total = sum(self.rejected.values())
        return f"accepted {self.accepted}, rejected {total}" + (f" ({reasons})" if reasons else "")


def scan_shards(folder: Path) -> ShardState:
    """The state of the shards of `folder`, streamed (memory: the de-duplication keys)."""
    state = ShardState()
    for path in shard_paths(folder):
        start, accepted = state.next_position, state.accepted
        for _, row in _rows_of(path, start):
            state.count(row)
        state.shards.append(
            {"file": path.name, "start": start, "end": state.next_position, "accepted": state.accepted - accepted}
        )
    return state


def _lock(folder: Path) -> IO[bytes]:
    """Hold an exclusive lock on `folder` (released when the handle closes or the process dies)."""
    handle = open(folder / LOCK_NAME, "wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"another run is writing to {folder}") from None
    return handle


def _checked_state(folder: Path, run: dict[str, Any], resume: bool) -> ShardState:
    """The state of `folder` for a run with settings `run`; raises unless the folder may take that run."""
    manifest = read_manifest(folder)
    has_shards = any(folder.glob("shard-*.jsonl"))
    if has_shards and manifest is None:
        raise ValueError(f"{folder} holds shard files but no {MANIFEST_NAME}: it was not written by this tool")
    if has_shards and not resume:
        raise ValueError(f"{folder} already holds triplet shards: pass --resume to continue that run, or use another --output")
    if has_shards:
        differences = _differences(manifest.get("run"), run)
        if differences:
            raise ValueError(f"--resume: the run in {folder} differs from this one: {'; '.join(differences)}")
    for stale in folder.glob("*.tmp"):
        if _TEMP_NAME.fullmatch(stale.name):  # a write killed before its rename: this tool's own temp file
            stale.unlink()
    return scan_shards(folder)


def _differences(before: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            difference
            for key in sorted(set(before) | set(now))
            for difference in _differences(before.get(key), now.get(key), f"{prefix}{key}.")
        ]
    return [] if before == now else [f"{prefix.rstrip('.')} was {before!r}, now {now!r}"]


class ShardWriter:
    """Buffers rows and writes them as the next shard every `shard_size` rows or `flush_seconds` seconds.

    Open a folder with [`ShardWriter.open`]: a new run needs a folder without shards; `resume` continues the
    shards already there, provided `run` (the settings that decide the triplets) equals the recorded run.
    """

    def __init__(
        self,
        folder: Path,
        run: dict[str, Any],
        state: ShardState,
        shard_size: int,
        flush_seconds: float,
        lock: IO[bytes] | None = None,
    ) -> None:
        if shard_size < 1 or flush_seconds <= 0:
            raise ValueError(f"need shard_size >= 1 and flush_seconds > 0, got {shard_size}, {flush_seconds}")
        self.folder = folder
        self.run = run
        self.state = state
        self.shard_size = shard_size
        self.flush_seconds = flush_seconds
        self._rows: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._lock = lock

    @classmethod
    def open(
        cls, folder: Path, run: dict[str, Any], *, resume: bool, shard_size: int = 1000, flush_seconds: float = 60.0
    ) -> ShardWriter:
        """A writer for `folder` (created when missing) that continues its shards when `resume`."""
        run = _json_ready(run)
        folder.mkdir(parents=True, exist_ok=True)
        lock = _lock(folder)
        try:
            state = _checked_state(folder, run, resume)
            writer = cls(folder, run, state, shard_size, flush_seconds, lock)
        except BaseException:
            lock.close()
            raise
        writer._write_manifest("running")
        return writer

    def add(self, row: dict[str, Any]) -> None:
        """Count `row` and buffer it; write a shard when the buffer is full or old enough."""
        self.state.count(row)
        self._rows.append(row)
        if len(self._rows) >= self.shard_size or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next shard and update the manifest."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        name = shard_name(len(self.state.shards))
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self._rows)
        write_text_atomic(self.folder / name, data)
        start = self._rows[0]["position"]
        accepted = sum(row["status"] == ACCEPTED for row in self._rows)
        self.state.shards.append({"file": name, "start": start, "end": start + len(self._rows), "accepted": accepted})
        self._rows = []
        self._write_manifest("running")

    def _write_manifest(self, status: str) -> None:
        """Rewrite the manifest with the written shards and `status` (running, complete, limit_reached, stopped).

        Called with no rows buffered, so that its counts are those of the shards.
        """
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "status": status,
            "run": self.run,
            "next_position": self.state.next_position,
            "accepted": self.state.accepted,
            "rejected": dict(self.state.rejected.most_common()),
            "shards": self.state.shards,
        }
        write_json(self.folder / MANIFEST_NAME, manifest)

    def close(self, status: str) -> None:
        """Write what is buffered and mark the run `status`."""
        self.flush()
        self._write_manifest(status)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


__all__ = [
    "ACCEPTED",
    "FORMAT",
    "MANIFEST_NAME",
    "REJECTED",
    "ShardState",
    "ShardWriter",
    "ROW_FIELDS",
    "attempt_row",
    "iter_located_rows",
    "iter_shard_rows",
    "read_manifest",
    "scan_shards",
    "shard_name",
    "shard_paths",
]
