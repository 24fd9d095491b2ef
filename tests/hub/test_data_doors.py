"""The dataset doors under rebuilds and bad input: every loader reads the rows on disk now, --overwrite deletes
only a dataset it built, bad shards and options get errors naming them, pushes refuse incomplete files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import torch
from datasets import load_dataset
from safetensors.torch import save_file

from hub import build_dataset as build_cli
from hub import generate_triplets as generate_cli
from hub import push_dataset as push_dataset_cli
from hub import push_model as push_model_cli
from modeling_scot.training import load_triplets
from modeling_scot.triplets.sources import open_captions
from tests.hub.test_hub import scot_config


def generate(folder: Path, num_scenes: int) -> Path:
    argv = ["--backend", "rules", "--captions", "world", "--num-scenes", str(num_scenes), "--output", str(folder)]
    assert generate_cli.main([*argv, "--no-progress"]) == 0
    return folder


def build(*argv) -> int:
    return build_cli.main([*map(str, argv), "--no-progress"])


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[int, Path]:
    """Shard folders of world runs of 5, 7 and 9 scenes (every scene gives one accepted triplet)."""
    root = tmp_path_factory.mktemp("shards")
    return {count: generate(root / f"world-{count}", count) for count in (5, 7, 9)}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """One datasets cache for the whole test, as a user's ~/.cache/huggingface/datasets is."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def on_disk(folder: Path) -> list[tuple[str, str]]:
    """(source_id, modified_caption) of the train rows of a built folder, read from its parquet files."""
    rows = []
    for path in sorted((folder / "data").glob("train-*.parquet")):
        rows += pq.read_table(path, columns=["source_id", "modified_caption"]).to_pylist()
    return [(row["source_id"], row["modified_caption"]) for row in rows]


def card_call(folder: Path):
    """The local-copy `load_dataset` call that the card documents, with FOLDER filled in."""
    text = (folder / "README.md").read_text()
    call = re.search(r'load_dataset\("parquet", data_files=(\{.*?\})\)', text).group(1)
    data_files = json.loads(call.replace("FOLDER", str(folder)))
    return load_dataset("parquet", data_files=data_files)


def loaded_rows(folder: Path) -> dict[str, list]:
    """The train rows each loader of the package (and the card's documented call) reads from `folder`."""
    train = load_triplets(str(folder))["train"]
    assert isinstance(train.features["image"], datasets.Image) and train[0]["image"].size == (64, 64)
    captions = open_captions(str(folder), caption_column="modified_caption", id_column="source_id")
    return {
        "scot train": list(zip(train["source_id"], train["modified_caption"])),
        "captions source": [(item.source_id, item.caption) for item in captions],
        "card": [(row["source_id"], row["modified_caption"]) for row in card_call(folder)["train"]],
    }


def test_every_loader_reads_the_rows_on_disk_after_rebuilds_and_in_a_same_named_folder(shards, tmp_path, hf_cache):
    folder = tmp_path / "first" / "scot-triplets"
    twin = tmp_path / "second" / "scot-triplets"  # same name, another parent
    for target, count in ((folder, 5), (folder, 7), (twin, 9), (folder, 5)):
        assert build("--shards", shards[count], "--output", target, "--validation-fraction", 0, "--overwrite") == 0
        expected = on_disk(target)
        assert len(expected) == count
        for loader, rows in loaded_rows(target).items():
            assert rows == expected, f"{loader} read stale rows of {target}"
    assert any(hf_cache.iterdir())  # the cache was used, not bypassed


def test_the_card_names_the_safe_local_call_and_the_hub_call(shards, tmp_path):
    assert build("--shards", shards[5], "--output", tmp_path / "d", "--validation-fraction", 0) == 0
    text = (tmp_path / "d" / "README.md").read_text()
    assert 'load_dataset("REPO_ID")' in text and "keyed by the repo's revision" in text
    assert 'load_dataset("parquet", data_files={"train": "FOLDER/data/train-*.parquet"})' in text
    assert "Plain `load_dataset(\"FOLDER\")` can return the rows cached for an earlier folder" in text


def test_a_card_naming_files_outside_its_folder_or_no_file_is_refused(shards, tmp_path):
    folder = tmp_path / "d"
    assert build("--shards", shards[5], "--output", folder, "--validation-fraction", 0) == 0
    card = (folder / "README.md").read_text()
    shutil.copy(next((folder / "data").glob("*.parquet")), tmp_path / "elsewhere.parquet")
    cases = (("../*.parquet", "outside the folder"), ("data/none-*.parquet", r"'train' \(data/none-\*.parquet\) matches no"))
    for patterns, message in cases:
        (folder / "README.md").write_text(card.replace("data/train-*.parquet", patterns))
        with pytest.raises(ValueError, match=message):
            load_triplets(str(folder))


# --overwrite


def test_overwrite_refuses_an_output_that_holds_or_is_an_input(shards, tmp_path, capsys):
    outer = tmp_path / "P"
    shutil.copytree(shards[5], outer / "inner")
    images = tmp_path / "images"
    images.mkdir()
    cases = [
        (["--shards", outer / "inner", "--output", outer], "holds the input --shards"),
        (["--shards", outer / "inner", "--output", outer / "inner"], "is the input --shards"),
        (["--shards", shards[5], "--output", images, "--images-root", images], "is the input --images-root"),
        (["--shards", shards[5], "--output", tmp_path, "--images-root", images], "holds the input --images-root"),
    ]
    (images / "keep.png").write_bytes(b"png")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for argv, message in cases:
        assert build(*argv, "--overwrite") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --output") and message in err and err.count("\n") == 1
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing deleted
    for overwrite in ((), ("--overwrite",)):  # a new folder inside the shards: refused, first run or rerun
        assert build("--shards", outer / "inner", "--output", outer / "inner" / "sub", *overwrite) == 2
        assert "is inside the input --shards" in capsys.readouterr().err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_overwrite_replaces_only_a_folder_it_built(shards, tmp_path, capsys):
    output = tmp_path / "d"
    assert build("--shards", shards[5], "--output", output, "--validation-fraction", 0) == 0
    (output / ".git").mkdir()
    (output / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert build("--shards", shards[7], "--output", output, "--validation-fraction", 0, "--overwrite") == 2
    assert "holds .git, which python -m hub.build_dataset does not write" in capsys.readouterr().err
    assert (output / ".git" / "HEAD").is_file() and len(on_disk(output)) == 5
    shutil.rmtree(output / ".git")
    assert build("--shards", shards[7], "--output", output, "--validation-fraction", 0, "--overwrite") == 0
    assert len(on_disk(output)) == 7 and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("size", [0, 7, 1025, 100000, -64])
def test_image_size_is_bounded(shards, tmp_path, capsys, size):
    assert build("--shards", shards[5], "--output", tmp_path / "d", "--image-size", size) == 2
    assert "--image-size must be in 8..1024 pixels" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# shards with wrong field types


def corrupt(source: Path, target: Path, line: int, field: str, value) -> Path:
    shutil.copytree(source, target)
    path = target / "shard-00000.jsonl"
    rows = [json.loads(text) for text in path.read_text().splitlines()]
    if value is KeyError:
        del rows[line - 1][field]
    else:
        rows[line - 1][field] = value
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return target


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("caption", 3, "field 'caption' is int, expected str"),
        ("modified_caption", ["a", "b"], "field 'modified_caption' is list, expected str or null"),
        ("modified_caption", None, "field 'modified_caption' is null in a row with status 'accepted'"),
        ("hard_negatives", "a cat", "field 'hard_negatives' is str, expected list"),
        ("hard_negatives", ["ok", 5], "field 'hard_negatives' item 1 is int, expected str"),
        ("source_id", None, "field 'source_id' is null, expected str"),
        ("position", True, "field 'position' is bool, expected int"),
        ("status", "maybe", "field 'status' is 'maybe'"),
        ("image", KeyError, "field 'image' is missing"),
    ],
)
def test_a_shard_row_with_a_wrong_field_names_file_line_and_field(shards, tmp_path, capsys, field, value, message):
    folder = corrupt(shards[5], tmp_path / "bad", 3, field, value)
    assert build("--shards", folder, "--output", tmp_path / "d") == 2
    err = capsys.readouterr().err
    assert f"{folder / 'shard-00000.jsonl'}: line 3" in err and message in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists() and [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_a_manifest_with_a_wrong_field_is_named(shards, tmp_path, capsys):
    folder = tmp_path / "bad"
    shutil.copytree(shards[5], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["run"]["source"] = "world"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert build("--shards", folder, "--output", tmp_path / "d") == 2
    assert "manifest.json: field 'run.source' is str, expected dict" in capsys.readouterr().err


def test_images_outside_the_images_root_or_not_images_are_refused(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("not for upload")
    (root / "fake.png").write_text("not an image")
    for image, message in (("../secret.txt", "is outside --images-root"), ("fake.png", "is not an image file")):
        (tmp_path / "c.jsonl").write_text(json.dumps({"image": image, "caption": "a red car"}) + "\n")
        shards = tmp_path / f"shards-{image.replace('/', '_')}"
        argv = ["--backend", "openai", "--model", "m", "--captions", tmp_path / "c.jsonl", "--output", shards]
        from bench.llm_server import FakeLLMServer

        with FakeLLMServer() as server:
            assert generate_cli.main([*map(str, argv), "--base-url", server.url, "--no-progress"]) == 0
        assert build("--shards", shards, "--output", tmp_path / "d", "--images-root", root, "--validation-fraction", 0) == 2
        err = capsys.readouterr().err
        assert "shard-00000.jsonl: line 1: field 'image'" in err and message in err
    assert not (tmp_path / "d").exists()


# pushes


def built(shards: dict[int, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    assert build("--shards", shards[5], "--output", folder, "--validation-fraction", 0) == 0
    return folder


def push_dataset(folder: Path) -> int:
    return push_dataset_cli.main(["--folder", str(folder), "--repo-id", "org/x", "--dry-run"])


def test_push_dataset_refuses_empty_truncated_and_half_written_files(shards, tmp_path, capsys):
    folder = built(shards, tmp_path)
    parquet = next((folder / "data").glob("*.parquet"))
    data = parquet.read_bytes()
    cases = [
        (lambda: parquet.write_bytes(b""), "is empty (0 bytes)"),
        (lambda: parquet.write_bytes(data[: len(data) // 2]), "is not a readable parquet file"),
        (lambda: (folder / "data" / "extra.parquet.incomplete").write_bytes(b"x"), "a half-written file"),
        (lambda: (folder / "notes.json").write_text(""), "notes.json in"),
    ]
    for damage, message in cases:
        damage()
        assert push_dataset(folder) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        shutil.rmtree(folder)
        folder = built(shards, tmp_path)
        parquet = next((folder / "data").glob("*.parquet"))
    assert push_dataset(folder) == 0


@pytest.fixture
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(scot_config()))
    save_file({"combiner.weight": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    return folder


def push_model(folder: Path) -> int:
    return push_model_cli.main(["--model", str(folder), "--repo-id", "org/x", "--dry-run"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors in"),
        (lambda f: (f / "config.json").write_text(""), "config.json in"),
        (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-8]), "truncated?"),
        (lambda f: (f / "tokenizer.json.part").write_text("{"), "tokenizer.json.part, a half-written file"),
        (lambda f: (f / "special_tokens_map.json").write_text("{"), "is not a readable json file"),
    ],
)
def test_push_model_refuses_empty_truncated_and_half_written_files(model_folder, capsys, damage, message):
    assert push_model(model_folder) == 0
    assert "model.safetensors" in capsys.readouterr().out
    damage(model_folder)
    assert push_model(model_folder) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_an_output_that_is_or_lies_under_a_file_is_refused_naming_it(shards, tmp_path, capsys):
    (tmp_path / "a-file").write_text("kept")
    for output, message in ((tmp_path / "a-file", "is a file; give a folder path"),
                            (tmp_path / "a-file" / "sub", "which is a file, not a folder")):  # fmt: skip
        assert build("--shards", shards[5], "--output", output) == 2
        assert f"--output '{output}' " in capsys.readouterr().err
        assert generate_cli.main(["--backend", "rules", "--captions", "world", "--limit", "2", "--output", str(output)]) == 2
        assert message in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"] and (tmp_path / "a-file").read_text() == "kept"
