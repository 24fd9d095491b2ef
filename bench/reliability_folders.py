"""Damaged model folders, index folders, annotation files and prediction files through the `scot` CLI, in-process.

    python bench/reliability_folders.py --seed 0 --per-door 120 --output folders.json

From valid files (a tiny random CLIP-based SCOT model saved full and Combiner-only, indexes of each kind built by
`scot index`, the tiny CIRR/FashionIQ/CIRCO/GeneCIS layouts of the tests, `scot eval`'s own CIRR and CIRCO
server files) a seeded corpus of damaged copies is made with the mutations of `tests/evaluation/mutations.py`
and each is run through `modeling_scot.cli.main`. Per door: `tried`, `clean` (a result, or a handled error:
exit code or SystemExit), `raw` (any other exception, must be 0) with up to five `raw_examples`, and of the clean
ones `results`, `errors` and `errors_naming_the_input` (the error line names a file of the damaged copy, or the
option).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tests.conftest import IMAGE_SIZE, MAX_TEXT_LENGTH, WORDS, _text_tower, _vision_tower  # noqa: E402
from tests.evaluation.benchmark_fixtures import make_circo, make_cirr, make_fashioniq, make_genecis  # noqa: E402
from tests.evaluation.mutations import (  # noqa: E402
    mutate_bytes,
    mutate_gallery_table,
    mutate_json_file,
    mutate_weights,
)
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel  # noqa: E402

from modeling_scot import ScotModel, ScotProcessor  # noqa: E402
from modeling_scot.cli import main as scot  # noqa: E402
from modeling_scot.evaluation.circo import load_circo  # noqa: E402
from modeling_scot.evaluation.cirr import load_cirr  # noqa: E402
from modeling_scot.evaluation.submissions import write_circo_submission, write_cirr_submissions  # noqa: E402
from modeling_scot.retrieval import faiss_available  # noqa: E402
from modeling_scot.word_tokenizer import build_word_level_tokenizer  # noqa: E402

SHOWN = 5
MODEL_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json", "tokenizer.json")
Case = tuple[list[str], str, str]
"""The argv of one run, what its error should name (the damaged copy's folder, or the option), and what was done."""


class Recorder:
    """A seeded `choose` for the mutations that remembers the named edits it picked."""

    def __init__(self, rng: random.Random):
        self.rng, self.picks = rng, []

    def __call__(self, options):
        pick = self.rng.choice(options if isinstance(options, (range, list, tuple)) else list(options))
        if isinstance(pick, str) and len(self.picks) < 4:
            self.picks.append(pick)
        return pick


def _fresh_copy(source: Path, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    return folder


def _damage(file: Path, choose: Recorder) -> None:
    if file.suffix == ".safetensors":
        mutate_weights(file, choose)
    elif file.suffix == ".json":
        mutate_json_file(file, choose)
    elif file.suffix == ".parquet" and choose(("table", "bytes")) == "table":
        mutate_gallery_table(file, choose)
    else:
        file.write_bytes(mutate_bytes(file.read_bytes(), choose))


def _drive(argv: list[str]) -> tuple[str, str]:
    """("result" | "error" | "raw", the error line or exception) of one in-process CLI run."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = scot(argv)
    except SystemExit as exit_:
        return ("result" if exit_.code in (0, None) else "error"), err.getvalue().strip()[-300:]
    except Exception as error:  # noqa: BLE001 - anything the CLI does not handle is what this bench counts
        return "raw", f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    lines = [line for line in err.getvalue().splitlines() if ": error: " in line]
    return ("result", "") if code == 0 else ("error", lines[-1] if lines else err.getvalue().strip()[-300:])


def _door(cases: Iterator[Case]) -> dict:
    counts = {"tried": 0, "clean": 0, "raw": 0, "results": 0, "errors": 0, "errors_naming_the_input": 0}
    examples = []
    for argv, named, what in cases:
        outcome, detail = _drive(argv)
        counts["tried"] += 1
        if outcome == "raw":
            counts["raw"] += 1
            if len(examples) < SHOWN:
                examples.append({"damaged": what, "argv": argv, "error": detail})
            continue
        counts["clean"] += 1
        counts[f"{outcome}s"] += 1
        counts["errors_naming_the_input"] += outcome == "error" and named in detail
    return {**counts, "raw_examples": examples}


# ----- valid files ------------------------------------------------------------------------------------------


def _saved_models(root: Path) -> dict[str, Path]:
    """A tiny random SCOT model (the tests' tiny CLIP and word tokenizer) saved full and Combiner-only."""
    tokenizer = build_word_level_tokenizer(WORDS, model_max_length=MAX_TEXT_LENGTH)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    config = CLIPConfig(text_config=_text_tower(len(tokenizer)), vision_config=_vision_tower(), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(root / "clip")
    ScotProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root / "clip")
    model = ScotModel.from_clip(root / "clip")
    model.save_pretrained(root / "full")
    model.save_pretrained(root / "combiner_only", combiner_only=True)
    return {"full": root / "full", "combiner_only": root / "combiner_only"}


def _indexes(root: Path, model: Path) -> dict[str, Path]:
    """Indexes of every kind built by `scot index` over 80 small images."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(80):
        Image.new("RGB", (16, 16), (3 * i, 200 - 2 * i, (37 * i) % 256)).save(images / f"{i:02d}.png")
    kinds = ["exact", *(["flat", "hnsw", "ivf"] if faiss_available() else [])]
    for kind in kinds:
        argv = ["index", "--model", str(model), "--images", str(images), "--output", str(root / kind), "--kind", kind]
        if _drive([*argv, "--num-workers", "0"])[0] != "result":
            raise RuntimeError(f"scot index --kind {kind} failed on valid input")
    return {kind: root / kind for kind in kinds}


def _benchmarks(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each tiny benchmark layout and the `scot eval` options that select one of its splits."""
    return {
        "cirr": (make_cirr(root / "cirr"), ["--split", "val"]),
        "fashioniq": (make_fashioniq(root / "fashioniq"), ["--split", "val", "--category", "dress"]),
        "circo": (make_circo(root / "circo"), ["--split", "val"]),
        "genecis": (make_genecis(root / "genecis"), ["--split", "focus_attribute"]),
    }


def _submissions(root: Path) -> dict[str, list[Path]]:
    """CIRR val (captions, recall, recall_subset) and CIRCO val (annotations, submission) files."""
    cirr, circo = make_cirr(root / "cirr"), make_circo(root / "circo")
    cirr_val, circo_val = load_cirr(cirr, "val"), load_circo(circo, "val")
    rng = np.random.default_rng(0)
    cirr_scores, circo_scores = (rng.normal(size=(len(s.queries), len(s.gallery))) for s in (cirr_val, circo_val))
    recall, subset = write_cirr_submissions(cirr_val, cirr_scores, root / "out")
    circo_file = write_circo_submission(circo_val, circo_scores, root / "out" / "circo.json")
    return {
        "cirr": [cirr / "captions" / "cap.rc2.val.json", recall, subset],
        "circo": [circo / "annotations" / "val.json", circo_file],
    }


# ----- damaged copies ---------------------------------------------------------------------------------------


def _model_cases(models: dict[str, Path], work: Path, rng: random.Random, count: int) -> Iterator[Case]:
    texts, image = work / "texts.txt", work / "image.png"
    texts.write_text("make it red\na small blue square\n")
    Image.new("RGB", (20, 12), (30, 40, 220)).save(image)
    for _ in range(count):
        folder = _fresh_copy(models[rng.choice(sorted(models))], work / "model")
        file, choose = folder / rng.choice(MODEL_FILES), Recorder(rng)
        _damage(file, choose)
        inputs = rng.choice([["--texts", str(texts)], ["--images", str(image)]])
        argv = ["embed", "--model", str(folder), *inputs, "--output", str(work / "embeds.safetensors")]
        yield argv, str(folder), f"{file.name}: {', '.join(choose.picks)}"


def _index_cases(indexes: dict[str, Path], model: Path, work: Path, rng: random.Random, count: int) -> Iterator[Case]:
    image = work / "query.png"
    Image.new("RGB", (16, 16), (200, 20, 20)).save(image)
    for _ in range(count):
        folder = _fresh_copy(indexes[rng.choice(sorted(indexes))], work / "index")
        file, choose = rng.choice(sorted(path for path in folder.iterdir() if path.is_file())), Recorder(rng)
        _damage(file, choose)
        argv = ["search", "--model", str(model), "--index", str(folder), "--image", str(image), "--text", "make it red"]
        yield [*argv, "-k", "5", "--exclude", "00.png"], str(folder), f"{file.name}: {', '.join(choose.picks)}"


def _annotation_cases(benchmarks: dict, model: Path, work: Path, rng: random.Random, count: int) -> Iterator[Case]:
    for _ in range(count):
        name = rng.choice(sorted(benchmarks))
        source, options = benchmarks[name]
        folder = _fresh_copy(source, work / name)
        file, choose = rng.choice(sorted(folder.rglob("*.json"))), Recorder(rng)
        _damage(file, choose)
        argv = ["eval", "--model", str(model), "--benchmark", name, "--data-root", str(folder), *options]
        argv += ["--method", "scot", "--cache-dir", str(work / "cache"), "--num-workers", "0"]
        yield argv, str(folder), f"{file.relative_to(folder)}: {', '.join(choose.picks)}"


def _prediction_cases(submissions: dict, work: Path, rng: random.Random, count: int) -> Iterator[Case]:
    for _ in range(count):
        name = rng.choice(sorted(submissions))
        copies = [
            _fresh_copy(path.parent, work / name / str(position)) / path.name
            for position, path in enumerate(submissions[name])
        ]
        file, choose = rng.choice(copies), Recorder(rng)
        _damage(file, choose)
        argv = ["score", "--benchmark", name, "--annotations", str(copies[0]), "--predictions", str(copies[1])]
        argv += ["--subset-predictions", str(copies[2])] if len(copies) > 2 else []
        yield argv, str(work / name), f"{file.name}: {', '.join(choose.picks)}"


def _option_cases(model: Path, work: Path) -> Iterator[Case]:
    """Out-of-range sizes: the world benchmark's query count and the quickstart's settings."""
    out = work / "options-out"
    for value in ("0", "-1", "50001", "1000000000"):
        for argv in (
            ["index", "--model", str(model), "--world-seed", "0", "--test-queries", value, "--output", str(out)],
            ["export-world", "--test-queries", value, "--output", str(out)],
            ["eval", "--model", str(model), "--benchmark", "world", "--test-queries", value],
            ["quickstart", "--test-queries", value, "--output", str(out)],
        ):
            yield argv, "--test-queries", f"--test-queries {value}"
    bad_settings = (("--epochs", "0"), ("--epochs", "-3"), ("--batch-size", "0"), ("--num-scenes", "0"), ("--learning-rate", "0"))
    for option, value in bad_settings:
        yield ["quickstart", option, value, "--output", str(out)], option, f"{option} {value}"


def run(seed: int = 0, per_door: int = 100) -> dict:
    """{door: {tried, clean, raw, raw_examples, results, errors, errors_naming_the_input}} over a corpus seeded by
    `seed` with `per_door` damaged copies per door."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="scot-reliability-folders-") as tmp:
        root = Path(tmp)
        os.environ["SCOT_HOME"] = str(root / "scot-home")
        models = _saved_models(root / "models")
        indexes = _indexes(root / "indexes", models["full"])
        benchmarks, submissions = _benchmarks(root / "benchmarks"), _submissions(root / "submissions")
        work = root / "work"
        work.mkdir()
        doors: dict[str, Callable[[], Iterator[Case]]] = {
            "model folders (scot embed)": lambda: _model_cases(models, work, rng, per_door),
            "index folders (scot search)": lambda: _index_cases(indexes, models["full"], work, rng, per_door),
            "annotation files (scot eval)": lambda: _annotation_cases(benchmarks, models["full"], work, rng, per_door),
            "prediction files (scot score)": lambda: _prediction_cases(submissions, work, rng, per_door),
            "world size and quickstart options": lambda: _option_cases(models["full"], work),
        }
        report = {}
        for name, cases in doors.items():
            started = time.monotonic()
            report[name] = {**_door(cases()), "seconds": round(time.monotonic() - started, 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the damaged corpus")
    parser.add_argument("--per-door", type=int, default=100, help="damaged copies per door")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    text = json.dumps(run(args.seed, args.per_door), indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
