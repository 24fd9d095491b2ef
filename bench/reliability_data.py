"""The data doors under bad input: dataset building, triplet generation, the two pushes and dataset loading.

    python bench/reliability_data.py            # JSON on stdout (about a minute on 2 cores)

Each command runs in-process through its `main(argv)`. An input counts as clean when the command finishes (exit
0, having done what it reports) or exits 2 with one `error:` line; as raw when anything else escapes (a traceback),
the error spans lines, an input is deleted, a run exits 0 with no triplet, or a loader returns rows that are not
those on disk. Loading runs `open_dataset`, `load_triplets` and the captions source on folders rebuilt in place, a
folder of the same name elsewhere, and broken folders; clean is the rows on disk or a ValueError naming the input.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import huggingface_hub.constants  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from bench.llm_server import FakeLLMServer  # noqa: E402
from hub import build_dataset, generate_triplets, push_dataset, push_model  # noqa: E402
from modeling_scot.datasets_io import open_dataset  # noqa: E402
from modeling_scot.training import load_triplets  # noqa: E402
from modeling_scot.triplets.shards import scan_shards  # noqa: E402
from modeling_scot.triplets.sources import open_captions  # noqa: E402

RAW_EXAMPLES = 5
FUZZED_SHARDS = 60
ODD_VALUES = [None, 0, -1, 1.5, True, "", "x", [], ["a", 2], {}, {"a": None}, 2**70]


class Door:
    """Counts of one door: inputs tried, clean outcomes, raw ones (with a few examples)."""

    def __init__(self) -> None:
        self.tried = self.clean = self.raw = 0
        self.raw_examples: list[str] = []

    def record(self, case: str, problem: str | None) -> None:
        self.tried += 1
        if problem is None:
            self.clean += 1
            return
        self.raw += 1
        if len(self.raw_examples) < RAW_EXAMPLES:
            self.raw_examples.append(f"{case}: {problem}"[:400])

    def to_dict(self) -> dict:
        return {"tried": self.tried, "clean": self.clean, "raw": self.raw, "raw_examples": self.raw_examples}


def _cli(main: Callable[[list[str]], int], argv: list) -> tuple[int | None, str, str | None]:
    """(exit status, stderr, escaped exception) of `main(argv)` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse
        return (stop.code if isinstance(stop.code, int) else 2), err.getvalue(), None
    except BaseException as exc:  # noqa: BLE001 - anything escaping is what this bench counts
        return None, err.getvalue(), f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return status, err.getvalue(), None


def _cli_problem(status: int | None, err: str, escaped: str | None) -> str | None:
    """Why an outcome is raw, or None when it is clean."""
    if escaped is not None:
        return f"escaped {escaped}"
    if status == 0:
        return None
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if status == 2 and len(errors) == 1 and err.rstrip().endswith(errors[0]):
        return None
    if status == 2 and err.startswith("usage: "):  # argparse rejected an option value
        return None
    return f"exit {status}: {' '.join(err.split())[:200]}"


def _run(door: Door, case: str, main: Callable, argv: list, check: Callable[[int | None], str | None] | None = None) -> None:
    status, err, escaped = _cli(main, argv)
    problem = _cli_problem(status, err, escaped)
    if problem is None and check is not None:
        problem = check(status)
    door.record(case, problem)


def _generate(*argv) -> int:
    status, err, escaped = _cli(generate_triplets.main, [*argv, "--no-progress"])
    if status != 0:
        raise RuntimeError(f"generation for the bench failed: {escaped or err}")
    return status


def _build(*argv) -> int:
    status, err, escaped = _cli(build_dataset.main, [*argv, "--no-progress"])
    if status != 0:
        raise RuntimeError(f"a build for the bench failed: {escaped or err}")
    return status


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def _fuzzed(shards: Path, target: Path, rng: random.Random) -> Path:
    """A copy of the shard folder `shards` with one random corruption of its first shard."""
    shutil.copytree(shards, target)
    path = target / "shard-00000.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    index = rng.randrange(len(lines))
    kind = rng.choice(["field", "missing", "bytes", "truncate", "swap", "json"])
    if kind in ("field", "missing"):
        row = json.loads(lines[index])
        name = rng.choice(sorted(row))
        if kind == "missing":
            del row[name]
        else:
            row[name] = rng.choice(ODD_VALUES)
        lines[index] = json.dumps(row).encode()
    elif kind == "bytes":
        lines[index] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
    elif kind == "truncate":
        lines[index] = lines[index][: rng.randrange(len(lines[index]))]
    elif kind == "swap" and len(lines) > 1:
        lines[index], lines[-1] = lines[-1], lines[index]
    else:
        lines[index] = json.dumps(rng.choice(ODD_VALUES)).encode()
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return target


def _files(root: Path) -> list[str]:
    return sorted(str(path) for path in root.rglob("*"))


def build_door(root: Path, world: Path, local: Path, images: Path) -> Door:
    """`python -m hub.build_dataset` on broken shards, options and outputs."""
    door = Door()
    out = root / "build-out"
    for name, argv in {
        "missing shards": ["--shards", root / "nope", "--output", out],
        "shards without manifest": ["--shards", images, "--output", out],
        "validation fraction 1": ["--shards", world, "--output", out, "--validation-fraction", 1],
        "validation fraction nan": ["--shards", world, "--output", out, "--validation-fraction", "nan"],
        "validation fraction tiny": ["--shards", world, "--output", out, "--validation-fraction", 1e-12],
        "image size 100000": ["--shards", world, "--output", out, "--image-size", 100000],
        "image size 0": ["--shards", world, "--output", out, "--image-size", 0],
        "image size text": ["--shards", world, "--output", out, "--image-size", "big"],
        "rows per file 0": ["--shards", world, "--output", out, "--rows-per-file", 0],
        "output is a file": ["--shards", world, "--output", images / "0.png"],
        "missing images root": ["--shards", local, "--output", out, "--images-root", root / "nope"],
    }.items():
        _run(door, name, build_dataset.main, [*argv, "--no-progress"])
        shutil.rmtree(out, ignore_errors=True)

    for index, (name, layout) in enumerate({
        "output is the shards": lambda box: ["--shards", box / "shards", "--output", box / "shards"],
        "output holds the shards": lambda box: ["--shards", box / "shards", "--output", box],
        "output is the images root": lambda box: ["--shards", box / "local", "--output", box / "images",
                                                  "--images-root", box / "images"],
        "output holds the images root": lambda box: ["--shards", box / "local", "--output", box,
                                                     "--images-root", box / "images"],
        "output inside the shards": lambda box: ["--shards", box / "shards", "--output", box / "shards" / "inner"],
    }.items()):
        box = root / f"sandbox-{index}"  # its own copies of the inputs: a run that deletes them harms nothing else
        for source, copy in ((world, "shards"), (local, "local"), (images, "images")):
            shutil.copytree(source, box / copy)
        (box / "shards" / "inner").mkdir()
        (box / "shards" / "inner" / "keep.txt").write_text("mine")
        before = _files(box)
        _run(door, name, build_dataset.main, [*layout(box), "--overwrite", "--no-progress"], _nothing_deleted(box, before))

    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _run(door, "overwrite a folder it did not build", build_dataset.main,
         ["--shards", world, "--output", foreign, "--overwrite", "--no-progress"],
         lambda status: None if (foreign / "notes.txt").is_file() else "deleted notes.txt")

    for image, name in (("../secret.txt", "image outside the root"), ("fake.png", "image that is not an image")):
        shards = _local_shards(root / f"local-{len(name)}", image)
        _run(door, name, build_dataset.main,
             ["--shards", shards, "--output", out, "--images-root", images, "--validation-fraction", 0, "--no-progress"],
             lambda status: f"exit 0: stored {image} as an image" if status == 0 else None)
        shutil.rmtree(out, ignore_errors=True)

    rng = random.Random(0)
    for index in range(FUZZED_SHARDS):
        shards = _fuzzed(world, root / f"fuzz-{index}", rng)
        _run(door, f"fuzzed shard {index}", build_dataset.main,
             ["--shards", shards, "--output", out, "--validation-fraction", 0, "--no-progress"])
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(shards)
    return door


def _nothing_deleted(root: Path, before: list[str]) -> Callable[[int | None], str | None]:
    def check(status: int | None) -> str | None:
        missing = sorted(set(before) - set(_files(root)))
        return f"deleted {len(missing)} input files, e.g. {missing[0]}" if missing else None

    return check


def _local_shards(folder: Path, image: str) -> Path:
    captions = folder.with_suffix(".jsonl")
    captions.write_text(json.dumps({"image": image, "caption": "a red square"}) + "\n")
    with FakeLLMServer() as server:
        _generate("--backend", "openai", "--model", "m", "--base-url", server.url, "--captions", captions, "--output", folder)
    return folder


def generate_door(root: Path) -> Door:
    """`python -m hub.generate_triplets` on broken captions, options and servers."""
    door = Door()
    bad = root / "captions"
    bad.mkdir()
    files = {
        "empty.jsonl": b"",
        "blank-lines.jsonl": b"\n\n\n",
        "not-utf8.jsonl": b'{"image": "a.jpg", "caption": "caf\xe9"}\n',
        "not-json.jsonl": b'{"image": "a.jpg", "caption": \n',
        "deep.jsonl": b"[" * 100000 + b"\n",
        "list-row.jsonl": b"[1, 2]\n",
        "int-caption.jsonl": b'{"image": "a.jpg", "caption": 3}\n',
        "null-caption.jsonl": b'{"image": "a.jpg", "caption": null}\n',
        "surrogate.jsonl": b'{"image": "a.jpg", "caption": "a \\ud800 cat"}\n',
        "empty-captions.jsonl": b'{"image": "a.jpg", "caption": "  "}\n{"image": "b.jpg", "caption": ""}\n',
        "no-columns.csv": b"path,text\na.jpg,a cat\n",
        "not-utf8.csv": b"image,caption\na.jpg,caf\xe9\n",
        "huge-field.csv": b"image,caption\na.jpg," + b"x" * 200000 + b"\n",
        "nul.csv": b"image,caption\na.jpg,a\x00cat\n",
        "coco-empty.json": b"{}",
        "coco-wrong.json": json.dumps({"images": [{"id": [1], "file_name": 2}], "annotations": []}).encode(),
        "coco-orphan.json": json.dumps({"images": [], "annotations": [{"image_id": 1, "caption": "a"}]}).encode(),
        "coco-deep.json": b"[" * 100000,
        "unknown.txt": b"a cat\n",
    }
    for name, data in files.items():
        (bad / name).write_bytes(data)
    with FakeLLMServer() as server, FakeLLMServer(script=["malformed"] * 50) as babbler:
        llm = ["--backend", "openai", "--model", "m", "--base-url", server.url, "--max-retries", 0]
        for index, name in enumerate(files):
            output = root / f"gen-{index}"
            _run(door, f"captions {name}", generate_triplets.main,
                 [*llm, "--captions", bad / name, "--output", output, "--no-progress"], _some_triplet(output))
        good = bad / "good.jsonl"
        good.write_text("".join(json.dumps({"image": f"{i}.jpg", "caption": f"a red car {i}"}) + "\n" for i in range(4)))
        cases = {
            "missing captions": [*llm, "--captions", bad / "missing.jsonl"],
            "dataset folder that is not one": [*llm, "--captions", bad],
            "hub id offline": [*llm, "--captions", "org/no-such-dataset"],
            "unreachable server, one caption": ["--backend", "openai", "--model", "m", "--base-url", _closed_port(),
                                                "--max-retries", 0, "--captions", _one_caption(bad)],
            "unreachable server": ["--backend", "openai", "--model", "m", "--base-url", _closed_port(), "--max-retries", 0,
                                   "--captions", good],
            "server that only babbles": ["--backend", "openai", "--model", "m", "--base-url", babbler.url, "--captions", good],
            "base url without scheme": ["--backend", "openai", "--model", "m", "--base-url", "localhost:1", "--captions", good],
            "openai without model": ["--backend", "openai", "--captions", good],
            "rules on a file": ["--backend", "rules", "--captions", good],
            "limit 0": [*llm, "--captions", good, "--limit", 0],
            "batch size 0": [*llm, "--captions", good, "--batch-size", 0],
            "variants 0": [*llm, "--captions", good, "--variants", 0],
            "num scenes 0": ["--backend", "rules", "--captions", "world", "--num-scenes", 0],
            "shard size 0": [*llm, "--captions", good, "--shard-size", 0],
            "temperature -1": [*llm, "--captions", good, "--temperature", -1],
            "concurrency 0": [*llm, "--captions", good, "--concurrency", 0],
            "timeout 0": [*llm, "--captions", good, "--timeout", 0],
            "negative hard negatives": ["--backend", "rules", "--captions", "world", "--num-scenes", 3,
                                        "--num-hard-negatives", -1],
        }
        for index, (name, argv) in enumerate(cases.items()):
            output = root / f"gen-case-{index}"
            _run(door, name, generate_triplets.main, [*argv, "--output", output, "--no-progress"], _some_triplet(output))
        world = ["--backend", "rules", "--captions", "world", "--num-scenes", 20]
        _generate(*world, "--output", root / "gen-done")
        for name, argv in {
            "rerun without resume": [*world, "--output", root / "gen-done"],
            "resume with other settings": [*world, "--seed", 5, "--output", root / "gen-done", "--resume"],
            "output is a file": [*world, "--output", good],
            "limit beyond the source": [*world, "--limit", 50, "--output", root / "gen-limit"],
        }.items():
            _run(door, name, generate_triplets.main, [*argv, "--no-progress"])
    return door


def _one_caption(folder: Path) -> Path:
    path = folder / "one.jsonl"
    path.write_text(json.dumps({"image": "a.jpg", "caption": "a red car"}) + "\n")
    return path


def _some_triplet(output: Path) -> Callable[[int | None], str | None]:
    """A check that a run which exited 0 wrote at least one accepted triplet."""

    def check(status: int | None) -> str | None:
        if status != 0:
            return None
        return None if scan_shards(output).accepted else "exit 0 with no triplet"

    return check


def push_doors(root: Path, world: Path) -> tuple[Door, Door]:
    """`python -m hub.push_dataset --dry-run` and `python -m hub.push_model --dry-run` on damaged folders."""
    dataset_door, model_door = Door(), Door()
    folder = root / "push-dataset"
    _build("--shards", world, "--output", folder, "--validation-fraction", 0)
    pristine = root / "push-dataset-pristine"
    shutil.copytree(folder, pristine)
    parquet = next((folder / "data").glob("*.parquet")).relative_to(folder)
    damages: dict[str, Callable[[Path], object]] = {
        "as built": lambda f: None,
        "empty parquet": lambda f: (f / parquet).write_bytes(b""),
        "truncated parquet": lambda f: (f / parquet).write_bytes((f / parquet).read_bytes()[:100]),
        "garbage parquet": lambda f: (f / parquet).write_bytes(b"PAR1 not really PAR1"),
        "empty card": lambda f: (f / "README.md").write_text(""),
        "card without yaml": lambda f: (f / "README.md").write_text("# triplets\n"),
        "card with bad yaml": lambda f: (f / "README.md").write_text("---\n: [\n---\n"),
        "card yaml a list": lambda f: (f / "README.md").write_text("---\n- a\n---\n"),
        "card without configs": lambda f: (f / "README.md").write_text("---\nlicense: mit\n---\n"),
        "configs not a list": lambda f: (f / "README.md").write_text("---\nconfigs: 3\n---\n"),
        "configs naming nothing": lambda f: (f / "README.md").write_text(
            "---\nconfigs:\n- config_name: default\n  data_files: nothing/*.parquet\n---\n"),
        "card not utf-8": lambda f: (f / "README.md").write_bytes(b"---\nlicense: \xff\n---\n"),
        "no parquet": lambda f: shutil.rmtree(f / "data"),
        "partial download": lambda f: (f / "data" / "x.parquet.incomplete").write_bytes(b"x"),
        "empty extra json": lambda f: (f / "extra.json").write_text(""),
        "missing folder": lambda f: shutil.rmtree(f),
    }
    for name, damage in damages.items():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(pristine, folder)
        damage(folder)
        _run(dataset_door, name, push_dataset.main, ["--folder", folder, "--repo-id", "org/x", "--dry-run"],
             _listed_files_complete(folder))
    _run(dataset_door, "bad repo id", push_dataset.main, ["--folder", pristine, "--repo-id", "a/b/c", "--dry-run"])

    model = root / "push-model"
    model_pristine = root / "push-model-pristine"
    model_pristine.mkdir()
    (model_pristine / "config.json").write_text(json.dumps({"model_type": "scot"}))
    save_file({"combiner.weight": torch.zeros(4, 4)}, str(model_pristine / "model.safetensors"))
    weights = (model_pristine / "model.safetensors").read_bytes()
    model_damages: dict[str, Callable[[Path], object]] = {
        "as saved": lambda f: None,
        "empty weights": lambda f: (f / "model.safetensors").write_bytes(b""),
        "truncated weights": lambda f: (f / "model.safetensors").write_bytes(weights[:-4]),
        "garbage weights": lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64),
        "no weights": lambda f: (f / "model.safetensors").unlink(),
        "empty config": lambda f: (f / "config.json").write_text(""),
        "config not json": lambda f: (f / "config.json").write_text("{"),
        "config a list": lambda f: (f / "config.json").write_text("[]"),
        "config of another model": lambda f: (f / "config.json").write_text('{"model_type": "clip"}'),
        "pickle weights": lambda f: (f / "pytorch_model.bin").write_bytes(b"\x80\x04"),
        "partial file": lambda f: (f / "tokenizer.json.part").write_text("{"),
        "empty tokenizer": lambda f: (f / "tokenizer.json").write_text(""),
        "temp file": lambda f: (f / "model.safetensors.tmp").write_bytes(b"x"),
        "missing folder": lambda f: shutil.rmtree(f),
    }
    for name, damage in model_damages.items():
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(model_pristine, model)
        damage(model)
        _run(model_door, name, push_model.main, ["--model", model, "--repo-id", "org/x", "--dry-run"],
             _listed_files_complete(model))
    _run(model_door, "bad repo id", push_model.main, ["--model", model_pristine, "--repo-id", "a/b/c", "--dry-run"])
    return dataset_door, model_door


def _listed_files_complete(folder: Path) -> Callable[[int | None], str | None]:
    """A check that a dry run which exited 0 listed no empty or temp file (its listing is not captured: re-list)."""

    def check(status: int | None) -> str | None:
        if status != 0:
            return None
        empty = [str(path) for path in folder.rglob("*") if path.is_file() and not path.stat().st_size
                 and not any(part.startswith(".") for part in path.relative_to(folder).parts)]
        return f"listed empty files {empty}" if empty else None

    return check


def loading_door(root: Path, shards: dict[int, Path]) -> Door:
    """Every loader on rebuilt and same-named folders (the rows must be those on disk) and on broken folders."""
    door = Door()
    loaders = {
        "open_dataset": lambda folder: _pairs(open_dataset(str(folder))["train"]),
        "load_triplets": lambda folder: _pairs(load_triplets(str(folder))["train"]),
        "captions source": lambda folder: [
            (item.source_id, item.caption)
            for item in open_captions(str(folder), caption_column="modified_caption", id_column="source_id")
        ],
    }
    first, twin = root / "a" / "triplets", root / "b" / "triplets"  # the same name under two parents
    builds = [(first, 5), (first, 7), (twin, 9), (first, 5)]
    for folder, count in builds:
        _build("--shards", shards[count], "--output", folder, "--validation-fraction", 0, "--overwrite")
        expected = _on_disk(folder)
        for name, loader in loaders.items():
            _load(door, f"{name} after a build of {count} rows in {folder.parent.name}", lambda: loader(folder), expected)
    broken = root / "broken"
    damages: dict[str, Callable[[Path], object]] = {
        "empty folder": lambda f: shutil.rmtree(f / "data") or (f / "README.md").unlink(),
        "empty parquet": lambda f: next((f / "data").glob("*.parquet")).write_bytes(b""),
        "garbage parquet": lambda f: next((f / "data").glob("*.parquet")).write_bytes(b"PAR1 nothing PAR1"),
        "truncated parquet": lambda f: _truncate(next((f / "data").glob("*.parquet"))),
        "card patterns match nothing": lambda f: shutil.rmtree(f / "data"),
        "card names files outside": lambda f: _card(f, "../*.parquet"),
        "card with bad yaml": lambda f: (f / "README.md").write_text("---\n: [\n---\n"),
        "configs not a list": lambda f: (f / "README.md").write_text("---\nconfigs: yes\n---\n"),
        "two configs, no default": lambda f: (f / "README.md").write_text(
            "---\nconfigs:\n- config_name: a\n  data_files: data/*.parquet\n"
            "- config_name: b\n  data_files: data/*.parquet\n---\n"),
        "data_files a number": lambda f: (f / "README.md").write_text(
            "---\nconfigs:\n- config_name: default\n  data_files: 3\n---\n"),
        "mixed file types": lambda f: (f / "data" / "train-extra.csv").write_text("a\n1\n"),
        "card without yaml": lambda f: (f / "README.md").write_text("# no yaml\n"),
        "card not utf-8": lambda f: (f / "README.md").write_bytes(b"---\nx: \xff\n---\n"),
        "save_to_disk marker without data": lambda f: (f / "state.json").write_text("{}"),
    }
    for name, damage in damages.items():
        shutil.rmtree(broken, ignore_errors=True)
        _build("--shards", shards[5], "--output", broken, "--validation-fraction", 0)
        shutil.copy(next((broken / "data").glob("*.parquet")), root / "outside.parquet")
        damage(broken)
        for loader_name, loader in loaders.items():
            _load(door, f"{loader_name} on {name}", lambda: loader(broken), None)
    for name, source in (("a file", root / "outside.parquet"), ("a missing folder or hub id", "org/no-such-dataset")):
        for loader_name, loader in loaders.items():
            _load(door, f"{loader_name} on {name}", lambda: loader(source), None)
    return door


def _card(folder: Path, pattern: str) -> None:
    text = (folder / "README.md").read_text()
    (folder / "README.md").write_text(text.replace("data/train-*.parquet", pattern))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pairs(dataset) -> list[tuple[str, str]]:
    return list(zip(dataset["source_id"], dataset["modified_caption"]))


def _on_disk(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for path in sorted((folder / "data").glob("train-*.parquet")):
        rows += pq.read_table(path, columns=["source_id", "modified_caption"]).to_pylist()
    return [(row["source_id"], row["modified_caption"]) for row in rows]


def _load(door: Door, case: str, load: Callable[[], list], expected: list | None) -> None:
    try:
        rows = load()
    except (ValueError, FileNotFoundError) as err:
        door.record(case, None if expected is None else f"failed on a good folder: {err}")
        return
    except Exception as exc:  # noqa: BLE001 - anything else is what this bench counts
        door.record(case, f"escaped {type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    if expected is not None and rows != expected:
        door.record(case, f"read {len(rows)} rows, {len(expected)} on disk")
        return
    door.record(case, None)


@contextlib.contextmanager
def _offline_cache(root: Path):
    """A fresh datasets cache and no Hub access while the doors run."""
    saved = (datasets.config.HF_DATASETS_CACHE, datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    verbosity, bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # broken parquet files are the point here
    datasets.disable_progress_bars()
    datasets.config.HF_DATASETS_CACHE = root / "hf-datasets-cache"
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    api = push_dataset.HfApi
    push_dataset.HfApi = None  # a dry run never reaches the network
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_CACHE, datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
        push_dataset.HfApi = api


def run() -> dict:
    """Counts per door: {door: {"tried", "clean", "raw", "raw_examples"}}."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="scot-reliability-data-") as name:
        root = Path(name)
        with _offline_cache(root):
            shards = {count: root / f"world-{count}" for count in (5, 7, 9, 30)}
            for count, folder in shards.items():
                _generate("--backend", "rules", "--captions", "world", "--num-scenes", count, "--output", folder)
            images = root / "images"
            images.mkdir()
            for index in range(3):
                Image.new("RGB", (8, 8), (80 * index, 0, 0)).save(images / f"{index}.png")
            (images / "fake.png").write_text("not an image")
            (root / "secret.txt").write_text("not for upload")
            local = _local_shards(root / "local", "0.png")
            doors = {
                "hub.build_dataset": build_door(root, shards[30], local, images),
                "hub.generate_triplets": generate_door(root),
            }
            doors["hub.push_dataset"], doors["hub.push_model"] = push_doors(root, shards[5])
            doors["dataset loading"] = loading_door(root, shards)
    return {name: door.to_dict() for name, door in doors.items()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
