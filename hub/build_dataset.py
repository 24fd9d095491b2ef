"""Build a Hub-ready triplet dataset (parquet splits + dataset card) from the shards of `hub.generate_triplets`.

    python -m hub.build_dataset --shards triplets/ --output scot-triplets/ [--validation-fraction 0.05] \\
        [--seed 0] [--images-root coco/train2017]

The accepted triplets are split into train and validation by image (`source_id`), so that no image is in
both, and written as `data/{split}-NNNNN-of-NNNNN.parquet` with a `README.md` whose YAML lists the splits.
Images are stored in an `Image` column when they can be read here (world scenes are rendered, local files
read under --images-root, `Image` rows of a dataset source read again); otherwise (URLs) as strings.
`scot train --dataset OUTPUT` and `datasets.load_dataset("parquet", data_files=...)` (see the card) read the
result as it is on disk; `python -m hub.push_dataset` uploads it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import string
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import Features, Image, Sequence, Value
from tqdm import tqdm

from hub.cli_output import fail
from modeling_scot.io_utils import check_output_path, replace_folder_atomic
from modeling_scot.triplets.shards import ACCEPTED, iter_located_rows, iter_shard_rows, read_manifest
from modeling_scot.triplets.sources import ImageLookup, image_lookup
from modeling_scot.triplets.validation import REJECTION_REASONS

CARD_TEMPLATE = Path(__file__).resolve().parent / "cards" / "dataset_card.md"
SPLITS = ("train", "validation")
TEXT_COLUMNS = ("caption", "modification", "modified_caption")
PROVENANCE_COLUMNS = ("generator", "model", "prompt_version")
SIZE_CATEGORIES = (
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
)
WRITE_BATCH = 500
IMAGE_SIZES = range(8, 1025)
WRITTEN_NAMES = re.compile(r"README\.md|data|data/[^/]+-\d{5}-of-\d{5}\.parquet")
"""What a build writes in its output folder: `--overwrite` replaces only a folder that holds nothing else."""
RUN_FIELDS = {
    "run": dict,
    "run.backend": dict,
    "run.backend.backend": str,
    "run.backend.prompt_version": str,
    "run.source": dict,
    "run.source.kind": str,
    "run.limits": dict,
    "run.limits.max_modification_words": int,
    "run.limits.max_caption_words": int,
    "run.variants": int,
    "next_position": int,
}
"""The manifest fields a build reads, with their types."""


def dataset_features(image_feature: bool) -> Features:
    """The columns of a built triplet dataset; `image` is an `Image` or a string (path or URL)."""
    return Features(
        {
            "image": Image() if image_feature else Value("string"),
            **{name: Value("string") for name in TEXT_COLUMNS},
            "hard_negatives": Sequence(Value("string")),
            "source_id": Value("string"),
            **{name: Value("string") for name in PROVENANCE_COLUMNS},
        }
    )


def split_of(source_id: str, validation_fraction: float, seed: int) -> str:
    """The split of every triplet of image `source_id`: a seeded hash, so one image lands in one split."""
    digest = hashlib.blake2b(f"{seed}\0{source_id}".encode("utf-8"), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") / 2**64 < validation_fraction else "train"


def size_category(count: int) -> str:
    """The Hub's size category of a dataset with `count` rows."""
    return next((name for bound, name in SIZE_CATEGORIES if count < bound), "1B<n<10B")


class _SplitWriter:
    """Streams the rows of one split into parquet files of at most `rows_per_file` rows."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, rows_per_file: int) -> None:
        self.folder, self.split, self.schema, self.rows_per_file = folder, split, schema, rows_per_file
        self.files: list[Path] = []
        self.rows = 0
        self.images: set[str] = set()
        self._buffer: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def add(self, example: dict[str, Any]) -> None:
        self._buffer.append(example)
        self.images.add(example["source_id"])
        self.rows += 1
        if len(self._buffer) >= WRITE_BATCH or self._in_file + len(self._buffer) >= self.rows_per_file:
            self._write()

    def _write(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.files.append(self.folder / f"{self.split}-{len(self.files):05d}.parquet")
            self._writer = pq.ParquetWriter(self.files[-1], self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._in_file += len(self._buffer)
        self._buffer = []
        if self._in_file >= self.rows_per_file:
            self._writer.close()
            self._writer, self._in_file = None, 0

    def close(self) -> list[str]:
        """Finish the files and name them `{split}-NNNNN-of-NNNNN.parquet`; their names."""
        self._write()
        if self._writer is not None:
            self._writer.close()
        names = []
        for index, path in enumerate(self.files):
            name = f"{self.split}-{index:05d}-of-{len(self.files):05d}.parquet"
            path.rename(path.with_name(name))
            names.append(name)
        return names


def _first_accepted(shards: Path) -> dict[str, Any]:
    for row in iter_shard_rows(shards):
        if row["status"] == ACCEPTED:
            return row
    raise ValueError(f"{shards} holds no accepted triplet")


def _example(row: dict[str, Any], lookup: ImageLookup | None, where: str) -> dict[str, Any]:
    try:
        image = row["image"] if lookup is None else lookup(row["source_id"], row["image"])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where}: {err}") from err
    except (ValueError, KeyError, IndexError) as err:
        raise ValueError(f"{where}: field 'image' {row['image']!r}: {err}") from err
    return {
        "image": image,
        **{name: row[name] for name in TEXT_COLUMNS},
        "hard_negatives": row["hard_negatives"],
        "source_id": row["source_id"],
        **{name: None if row[name] is None else str(row[name]) for name in PROVENANCE_COLUMNS},
    }


def _check_manifest(manifest: dict[str, Any], shards: Path) -> None:
    """Raise ValueError naming the first field a build reads that the manifest lacks or holds with another type."""
    for dotted, kind in RUN_FIELDS.items():
        value: Any = manifest
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, kind):
            found = "missing" if value is None else type(value).__name__
            raise ValueError(f"{shards / 'manifest.json'}: field {dotted!r} is {found}, expected {kind.__name__}")


def _inputs(shards: Path, source: dict[str, Any], images_root: Path | None) -> list[tuple[str, Path]]:
    """The files and folders a build reads, each with the option or manifest field that names it."""
    inputs = [("--shards", shards)]
    if images_root is not None:
        inputs.append(("--images-root", images_root))
    for key in ("path", "source"):
        if isinstance(source.get(key), str) and Path(source[key]).exists():
            inputs.append((f"the captions ({key} in the manifest)", Path(source[key])))
    return inputs


def _check_apart(output: Path, inputs: list[tuple[str, Path]]) -> None:
    """Refuse an `output` that is, holds or lies inside one of `inputs`: replacing it would delete what the build
    reads, and a build inside its shards would be read back by the next one."""
    target = output.resolve()
    for name, path in inputs:
        where = path.resolve()
        if where.is_relative_to(target) or target.is_relative_to(where):
            relation = "is" if where == target else "holds" if where.is_relative_to(target) else "is inside"
            raise ValueError(
                f"--output {output} {relation} the input {name} {path}: the build must not write where it reads; "
                "choose another --output"
            )


def _check_replaceable(output: Path) -> None:
    """Refuse to replace `output` when it is a link or holds anything a build does not write."""
    if output.is_symlink():
        raise ValueError(f"--output {output} is a symbolic link: --overwrite replaces only a dataset folder it built")
    for path in sorted(output.rglob("*")):
        relative = path.relative_to(output).as_posix()
        if not WRITTEN_NAMES.fullmatch(relative) or path.is_symlink():
            raise ValueError(
                f"--output {output} holds {relative}, which python -m hub.build_dataset does not write: --overwrite "
                "replaces only a dataset folder it built; move that away or choose another --output"
            )


def _rejection_table(rejected: Counter) -> str:
    if not rejected:
        return "none."
    rows = [f"| `{reason}` | {count} | {REJECTION_REASONS.get(reason, '')} |" for reason, count in rejected.most_common()]
    return "\n".join(["| reason | count | meaning |", "|---|---|---|", *rows])


def render_card(manifest: dict[str, Any], counts: dict[str, Any], license_id: str, image_column: str) -> str:
    """The dataset card: YAML (configs, license, task categories, tags, size) and how the data was generated."""
    run, writers = manifest["run"], counts["splits"]
    backend, limits, source = run["backend"], run["limits"], run["source"]
    header = {
        "license": license_id,
        "pretty_name": "SCOT triplets",
        "language": ["en"],
        "task_categories": ["image-to-image", "text-to-image"],
        "tags": ["composed-image-retrieval", "scot", "synthetic", "triplets"],
        "size_categories": [size_category(counts["accepted"])],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in writers],
            }
        ],
    }
    llm = backend["backend"] != "rules"
    if llm:
        negatives = (
            "The LLM was asked for k captions close to *u* that violate *m* (the change on the wrong object, a wrong "
            "value, or the change missing); those equal to *c* or *u* after normalisation and repeats were dropped, "
            "so a row may hold fewer than k."
        )
    else:
        negatives = "The world's edit engine wrote k near-miss captions: the edit on another object, with another value, or not made."
    fields = {
        "title": f"SCOT triplets ({backend['backend']}{', ' + backend['model'] if backend.get('model') else ''})",
        "generator": backend["backend"],
        "model": backend.get("model") or "none (rule-written)",
        "prompt_version": backend["prompt_version"],
        "temperature": backend.get("temperature") if backend.get("temperature") is not None else "n/a",
        "answer_check": "Each answer had to hold exactly one JSON object (a fenced block or prose around it was tolerated). "
        if llm
        else "",
        "prompt_check": ", and nothing copied from the prompt or its few-shot examples" if llm else "",
        "seed": backend.get("seed"),
        "num_hard_negatives": backend.get("num_hard_negatives"),
        "variants": run["variants"],
        "source": ", ".join(f"{key} {value}" for key, value in source.items()),
        "status": manifest.get("status"),
        "max_modification_words": limits["max_modification_words"],
        "max_caption_words": limits["max_caption_words"],
        "requests": counts["requests"],
        "accepted": counts["accepted"],
        "rejections": _rejection_table(counts["rejected"]),
        "hard_negative_source": negatives,
        "split_rows": "\n".join(f"| {split} | {w['rows']} | {w['images']} |" for split, w in writers.items()),
        "split_seed": counts["seed"],
        "image_column": image_column,
        "data_files_usage": ", ".join(f'"{split}": "FOLDER/data/{split}-*.parquet"' for split in writers),
    }
    body = string.Template(CARD_TEMPLATE.read_text(encoding="utf-8")).substitute(fields)
    return f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n{body}"


def build_dataset(
    shards: Path,
    output: Path,
    *,
    validation_fraction: float = 0.05,
    seed: int = 0,
    images_root: Path | None = None,
    image_size: int = 64,
    license_id: str | None = None,
    overwrite: bool = False,
    rows_per_file: int = 100_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the dataset of the accepted triplets in `shards` to `output`; return its counts.

    With `overwrite`, an existing `output` is replaced, provided it holds only what a build writes (README.md
    and data/*.parquet) and none of the inputs; the new folder is written beside it and renamed into place.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"--image-size must be in {IMAGE_SIZES.start}..{IMAGE_SIZES.stop - 1} pixels, got {image_size}")
    if rows_per_file < 1:
        raise ValueError(f"--rows-per-file must be >= 1, got {rows_per_file}")
    manifest = read_manifest(shards) if shards.is_dir() else None
    if manifest is None:
        raise ValueError(f"{shards} is not a folder of triplet shards (it has no manifest.json)")
    _check_manifest(manifest, shards)
    source = manifest["run"]["source"]
    check_output_path(str(output), "--output", folder=True)
    inputs = _inputs(shards, source, images_root)
    _check_apart(output, inputs[:1])  # the shards are read in full: a build never writes among them
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise ValueError(f"{output} exists and is not empty: pass --overwrite or choose another --output")
        _check_apart(output, inputs)
        _check_replaceable(output)
    lookup = image_lookup(source, _first_accepted(shards)["image"], images_root, image_size)
    with replace_folder_atomic(output) as building:
        counts = _write_splits(shards, building / "data", manifest, lookup, validation_fraction, seed, rows_per_file, progress)
        image_column = "the image (`Image`)" if lookup is not None else "the image's path or URL"
        license_id = license_id or ("apache-2.0" if source["kind"] == "world" else "other")
        card = render_card(manifest, counts, license_id, image_column)
        (building / "README.md").write_text(card, encoding="utf-8")
    return {**counts, "rejected": dict(counts["rejected"])}


def _write_splits(
    shards: Path,
    folder: Path,
    manifest: dict[str, Any],
    lookup: ImageLookup | None,
    validation_fraction: float,
    seed: int,
    rows_per_file: int,
    progress: bool,
) -> dict[str, Any]:
    """Stream the accepted rows of `shards` into parquet splits under `folder`; their counts."""
    folder.mkdir()
    schema = dataset_features(lookup is not None).arrow_schema
    writers = {split: _SplitWriter(folder, split, schema, rows_per_file) for split in SPLITS}
    rejected: Counter = Counter()
    requests = 0
    rows = tqdm(iter_located_rows(shards), total=manifest["next_position"], unit="row", desc="building", disable=not progress)
    for where, row in rows:
        requests += 1
        if row["status"] != ACCEPTED:
            rejected[row["reason"]] += 1
            continue
        writers[split_of(row["source_id"], validation_fraction, seed)].add(_example(row, lookup, where))
    for writer in writers.values():
        writer.close()
    if validation_fraction > 0 and not writers["validation"].rows:
        raise ValueError(
            f"no image fell in the validation split ({writers['train'].rows} triplets of {len(writers['train'].images)} "
            "images): raise --validation-fraction or set it to 0"
        )
    return {
        "requests": requests,
        "accepted": sum(writer.rows for writer in writers.values()),
        "rejected": rejected,
        "seed": seed,
        "splits": {split: {"rows": w.rows, "images": len(w.images)} for split, w in writers.items() if w.rows},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub.build_dataset",
        description="Build parquet train/validation splits and a dataset card from triplet shards.",
    )
    parser.add_argument("--shards", required=True, type=Path, help="folder written by hub.generate_triplets")
    parser.add_argument("--output", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--validation-fraction", type=float, default=0.05, help="share of images in validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split by image")
    parser.add_argument("--images-root", type=Path, help="folder that relative image paths are read under")
    parser.add_argument(
        "--image-size", type=int, default=64, help=f"render size of world scenes ({IMAGE_SIZES.start}..{IMAGE_SIZES.stop - 1})"
    )
    parser.add_argument("--license", dest="license_id", help="license of the card (default: apache-2.0 for the world, else other)")
    parser.add_argument("--rows-per-file", type=int, default=100_000, help="rows per parquet file")
    parser.add_argument("--overwrite", action="store_true", help="replace --output when it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on any error)."""
    args = _parser().parse_args(argv)
    try:
        counts = build_dataset(
            args.shards,
            args.output,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            images_root=args.images_root,
            image_size=args.image_size,
            license_id=args.license_id,
            overwrite=args.overwrite,
            rows_per_file=args.rows_per_file,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as err:
        return fail(err)
    splits = ", ".join(f"{split} {c['rows']} triplets of {c['images']} images" for split, c in counts["splits"].items())
    print(f"wrote {args.output}: {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
