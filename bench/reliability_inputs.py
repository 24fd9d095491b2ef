"""Odd and broken image files and odd texts through the package's input doors, as one JSON object.

    python bench/reliability_inputs.py --seed 0 --damaged 400 --output inputs.json
    python bench/reliability_inputs.py --pillow-images pillow-12.3.0/Tests/images   # also Pillow's test images

`images`: every kind of file of `tests/models/test_image_inputs.FILE_KINDS`, a 100-megapixel PNG, and seeded
damaged copies of the readable ones (cut at a random offset, bytes overwritten or zeroed, junk in front, emptied:
`tests/evaluation/mutations.mutate_bytes`; or the first bytes of another format swapped in), each through
`load_image`. `text`: `tests/models/test_text_inputs.ODD_TEXTS` and seeded random strings (control characters,
lone surrogates, right-to-left, CJK, emoji, up to 20,000 characters) through `ScotProcessor` with the tests'
tiny word-level tokenizer. `pillow test images` (with `--pillow-images`): every file of that folder.

Per door: `tried`, `clean` (a result, or a ValueError/FileNotFoundError naming the input), `raw` (anything else,
or an error that does not name the input; must be 0) with up to five `raw_examples`, and of the clean ones
`results` and `errors`; for images also the slowest load in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import CLIPImageProcessor  # noqa: E402

from modeling_scot.processing_scot import ScotProcessor, load_image  # noqa: E402
from modeling_scot.word_tokenizer import build_word_level_tokenizer  # noqa: E402
from tests.conftest import MAX_TEXT_LENGTH, WORDS  # noqa: E402
from tests.evaluation.mutations import mutate_bytes  # noqa: E402
from tests.models.test_image_inputs import (  # noqa: E402
    BIG_SIDE,
    FILE_KINDS,
    with_header_of,
    write_black_png,
    write_kind,
)
from tests.models.test_text_inputs import ODD_TEXTS  # noqa: E402

SHOWN = 5
TEXT_ALPHABETS = (
    "make it red blue a circle on the left ",
    "".join(map(chr, range(0x20))) + "\x7f\x85\xa0",
    "\u202e\u202b\u200f\u0627\u0644\u0639\u0631\u0628\u064a\u0629\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u7ea2\u8272\u5706\u5f62\u3001\u3002\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4",
    "\U0001f534\u2b50\U0001f469\u200d\U0001f467\ufe0f\U0001f3fd",
    "\u0301\u0308\u200b\ufeff\ue000\ufffd\uffff",
    "\udce9\udcff\ud800\udfff",
)


class Door:
    """Counts of one door: a result or an error naming the input is clean, anything else raw."""

    def __init__(self) -> None:
        self.counts = {"tried": 0, "clean": 0, "raw": 0, "results": 0, "errors": 0}
        self.raw_examples: list[dict] = []
        self.slowest = 0.0

    def record(self, what: str, named: str, attempt: Callable[[], object]) -> None:
        self.counts["tried"] += 1
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt()
            outcome = "results"
        except (ValueError, FileNotFoundError) as error:
            outcome = "errors" if named in str(error) else f"error not naming {named!r}: {error}"
        except Exception as error:  # noqa: BLE001 - anything unhandled is what this bench counts
            outcome = f"{type(error).__name__}: {error}"
        self.slowest = max(self.slowest, time.perf_counter() - started)
        if outcome in ("results", "errors"):
            self.counts["clean"] += 1
            self.counts[outcome] += 1
        else:
            self.counts["raw"] += 1
            if len(self.raw_examples) < SHOWN:
                self.raw_examples.append({"input": what, "error": " ".join(outcome.split())[:300]})

    def report(self) -> dict:
        return {**self.counts, "raw_examples": self.raw_examples}


def _image_door(paths: Iterable[tuple[str, Path]]) -> dict:
    door = Door()
    for what, path in paths:
        door.record(what, str(path), lambda: load_image(path, "image"))
    return {**door.report(), "slowest_seconds": round(door.slowest, 3)}


Original = tuple[str, bytes, str]
"""What a file is, its bytes and its file name."""


def _damaged(originals: list[Original], rng: random.Random, count: int) -> Iterable[Original]:
    """`count` damaged copies: byte damage, or another file's header swapped in."""
    for _ in range(count):
        kind, raw, filename = rng.choice(originals)
        if rng.random() < 0.25:
            donor_kind, donor, _ = rng.choice(originals)
            yield f"{kind} with the header of {donor_kind}", with_header_of(raw, donor), filename
        else:
            yield f"{kind} damaged", mutate_bytes(raw, rng.choice), filename


def image_files(folder: Path, seed: int, damaged: int) -> list[tuple[str, Path]]:
    """Write the corpus into `folder`: each kind of file, the 100-megapixel PNG and `damaged` damaged copies."""
    corpus = []
    for kind_id, kind in FILE_KINDS.items():
        (folder / kind_id).mkdir(parents=True)
        corpus.append((kind_id, write_kind(kind, folder / kind_id)))
    readable = [(kind_id, path.read_bytes(), path.name) for kind_id, path in corpus if path.is_file()]
    corpus.append(("100-megapixel PNG", write_black_png(folder / "huge.png", BIG_SIDE)))
    for number, (what, raw, filename) in enumerate(_damaged(readable, random.Random(seed), damaged)):
        path = folder / f"damaged-{number:04d}" / filename
        path.parent.mkdir()
        path.write_bytes(raw)
        corpus.append((what, path))
    return corpus


def _random_text(rng: random.Random) -> str:
    alphabet = "".join(rng.sample(TEXT_ALPHABETS, rng.randint(1, 3)))
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 40, 300, 20_000))))


def texts(seed: int, count: int) -> list[tuple[str, object]]:
    """(what, text argument): the odd texts alone, in a batch with a plain one, and `count` random strings."""
    rng = random.Random(seed)
    corpus: list[tuple[str, object]] = [(key, text) for key, text in ODD_TEXTS.items()]
    corpus += [(f"[plain, {key}]", ["make it red", text]) for key, text in ODD_TEXTS.items()]
    corpus += [(f"random text {number}", _random_text(rng)) for number in range(count)]
    return corpus


def _text_door(corpus: list[tuple[str, object]]) -> dict:
    tokenizer = build_word_level_tokenizer(WORDS, model_max_length=MAX_TEXT_LENGTH)
    processors = [ScotProcessor(CLIPImageProcessor(), tokenizer, padding) for padding in ("longest", "max_length")]
    door = Door()
    for what, text in corpus:
        for processor in processors:
            door.record(what, "text", lambda: _tokenised(processor, text))
    return door.report()


def _tokenised(processor: ScotProcessor, text: object) -> None:
    """Tokenise `text`; a batch of the wrong shape counts as raw."""
    ids = processor(text=text)["input_ids"]
    rows = len(text) if isinstance(text, list) else 1
    if ids.shape[0] != rows or not 2 <= ids.shape[1] <= MAX_TEXT_LENGTH:
        raise AssertionError(f"input_ids of shape {tuple(ids.shape)} for {rows} text(s)")


def pillow_images(folder: Path) -> list[tuple[str, Path]]:
    """Every file under `folder` (e.g. Pillow's Tests/images from its source distribution), sorted."""
    return [(path.relative_to(folder).as_posix(), path) for path in sorted(folder.rglob("*")) if path.is_file()]


def run(seed: int = 0, damaged: int = 400, random_texts: int = 200, pillow_images_folder: Path | None = None) -> dict:
    """{"images": door, "text": door[, "pillow test images": door]} over a corpus seeded by `seed`."""
    folder = Path(tempfile.mkdtemp(prefix="scot-reliability-inputs-"))
    try:
        report = {
            "images": _image_door(image_files(folder, seed, damaged)),
            "text": _text_door(texts(seed, random_texts)),
        }
    finally:
        shutil.rmtree(folder)
    if pillow_images_folder is not None:
        report["pillow test images"] = _image_door(pillow_images(pillow_images_folder))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the damaged files and random texts")
    parser.add_argument("--damaged", type=int, default=400, help="damaged image files")
    parser.add_argument("--random-texts", type=int, default=200, help="random texts")
    parser.add_argument("--pillow-images", type=Path, metavar="DIR", help="also load every file in DIR")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    text = json.dumps(run(args.seed, args.damaged, args.random_texts, args.pillow_images), indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
