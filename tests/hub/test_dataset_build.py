"""Building a Hub-ready triplet dataset from generation shards, loading it offline, and the push dry run."""

import json
import os

import pytest
import yaml
from datasets import Dataset, Image, load_dataset
from PIL import Image as PILImage

from bench.llm_server import FakeLLMServer
from hub import build_dataset as build_cli
from hub import generate_triplets as generate_cli
from hub import push_dataset as push_cli
from modeling_scot.triplets.shards import scan_shards

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
COLUMNS = [
    "image",
    "caption",
    "modification",
    "modified_caption",
    "hard_negatives",
    "source_id",
    "generator",
    "model",
    "prompt_version",
]


def generate(*argv):
    assert generate_cli.main([*map(str, argv), "--no-progress"]) == 0


def build(*argv):
    return build_cli.main([*map(str, argv), "--no-progress"])


def load(folder, tmp_path):
    return load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))


def card_yaml(folder):
    text = (folder / "README.md").read_text()
    _, header, body = text.split("---", 2)
    return yaml.safe_load(header), body


@pytest.fixture(scope="module")
def world_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate("--backend", "rules", "--captions", "world", "--num-scenes", 60, "--variants", 2, "--output", root / "shards")
    assert build("--shards", root / "shards", "--output", root / "dataset", "--validation-fraction", 0.25) == 0
    return root


def test_world_dataset_loads_offline_with_both_splits_and_images(world_dataset, tmp_path):
    dataset = load(world_dataset / "dataset", tmp_path)
    assert set(dataset) == {"train", "validation"}
    assert dataset["train"].column_names == COLUMNS and isinstance(dataset["train"].features["image"], Image)
    train_ids, validation_ids = set(dataset["train"]["source_id"]), set(dataset["validation"]["source_id"])
    assert train_ids and validation_ids and not train_ids & validation_ids
    assert len(dataset["train"]) + len(dataset["validation"]) == scan_shards(world_dataset / "shards").accepted
    row = dataset["train"][0]
    assert row["image"].size == (64, 64) and row["generator"] == "rules" and row["prompt_version"] == "world-rules-1"
    assert row["modified_caption"] != row["caption"] and len(row["hard_negatives"]) == 3
    files = sorted(p.name for p in (world_dataset / "dataset" / "data").iterdir())
    assert files == ["train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]


def test_dataset_card_has_hub_yaml_and_tells_how_it_was_made(world_dataset):
    header, body = card_yaml(world_dataset / "dataset")
    assert {"configs", "license", "task_categories", "tags", "size_categories"} <= set(header)
    assert header["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.parquet"},
                {"split": "validation", "path": "data/validation-*.parquet"},
            ],
        }
    ]
    assert header["license"] == "apache-2.0" and header["size_categories"] == ["n<1K"]
    accepted = scan_shards(world_dataset / "shards").accepted
    assert "world-rules-1" in body and f"120 requests gave {accepted} accepted triplets" in body
    assert "## Hard negatives" in body and "extra negative" in body and "| train |" in body


def test_llm_triplets_of_local_images_and_of_urls(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i, colour in enumerate(["red", "green", "blue", "yellow", "white", "black"]):
        PILImage.new("RGB", (8, 8), colour).save(images / f"{i}.png")
    annotations = [{"image_id": i, "caption": f"{n} {c} square"} for i, c in enumerate("abcdef") for n in ("a", "one")]
    coco = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(6)], "annotations": annotations}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    urls = "\n".join(json.dumps({"image": f"https://example.org/{i}.jpg", "caption": f"a cat {i}"}) for i in range(6))
    (tmp_path / "urls.jsonl").write_text(urls + "\n")
    with FakeLLMServer() as server:
        for name in ("captions.json", "urls.jsonl"):
            generate("--backend", "openai", "--model", "fake-llm", "--base-url", server.url, "--captions", tmp_path / name,
                     "--output", tmp_path / f"shards-{name}")
    assert build("--shards", tmp_path / "shards-captions.json", "--output", tmp_path / "coco", "--images-root", images,
                 "--validation-fraction", 0.4) == 0
    dataset = load(tmp_path / "coco", tmp_path)
    rows = list(dataset["train"].cast_column("image", Image(decode=False))) + list(
        dataset["validation"].cast_column("image", Image(decode=False))
    )
    assert len(rows) == 12 and {row["model"] for row in rows} == {"fake-llm"}
    assert all(row["image"]["bytes"] == (images / f"{row['source_id']}.png").read_bytes() for row in rows)
    assert card_yaml(tmp_path / "coco")[0]["license"] == "other"
    assert build("--shards", tmp_path / "shards-urls.jsonl", "--output", tmp_path / "urls", "--validation-fraction", 0.4) == 0
    dataset = load(tmp_path / "urls", tmp_path)
    assert dataset["train"].features["image"].dtype == "string"
    assert all(url.startswith("https://example.org/") for url in dataset["train"]["image"])


def test_image_dataset_source_keeps_ids_in_shards_and_images_in_the_build(tmp_path):
    pictures = [PILImage.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(5)]
    source = Dataset.from_dict({"image": pictures, "text": [f"a dark square {i}" for i in range(5)]})
    source.save_to_disk(str(tmp_path / "source"))
    with FakeLLMServer() as server:
        generate("--backend", "openai", "--model", "m", "--base-url", server.url, "--captions", tmp_path / "source",
                 "--caption-column", "text", "--output", tmp_path / "shards")
    shard_text = (tmp_path / "shards" / "shard-00000.jsonl").read_text()
    assert '"image": "3"' in shard_text and "bytes" not in shard_text
    assert build("--shards", tmp_path / "shards", "--output", tmp_path / "built", "--validation-fraction", 0) == 0
    train = load(tmp_path / "built", tmp_path)["train"]
    assert len(train) == 5 and train[3]["image"].getpixel((0, 0)) == (120, 0, 0)


def test_build_errors_are_one_line(world_dataset, tmp_path, capsys):
    cases = [
        (["--shards", tmp_path, "--output", tmp_path / "x"], "has no manifest.json"),
        (["--shards", world_dataset / "shards", "--output", world_dataset / "dataset"], "exists and is not empty"),
        (["--shards", world_dataset / "shards", "--output", tmp_path / "y", "--validation-fraction", 1e-9], "no image fell"),
        (["--shards", world_dataset / "shards", "--output", tmp_path / "z", "--validation-fraction", 1.5], "in [0, 1)"),
    ]
    for argv, message in cases:
        assert build(*argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "y").exists() and not (tmp_path / ".y.building").exists()


def test_push_dry_run_lists_exactly_the_files(world_dataset, capsys, monkeypatch):
    monkeypatch.setattr(push_cli, "HfApi", None)  # any network use would fail
    folder = world_dataset / "dataset"
    assert push_cli.main(["--folder", str(folder), "--repo-id", "org/scot-triplets", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(line.split()[-1] for line in lines[:-2]) == files
    assert lines[-2].endswith(f"total, {len(files)} files") and "nothing was uploaded" in lines[-1]


def test_push_checks_the_folder_first(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    cases = [
        ("README.md", None, "has no README.md"),
        ("README.md", "# no yaml\n", "has no YAML header"),
        ("README.md", "---\nlicense: mit\n---\n", "has no 'configs'"),
        ("README.md", "---\nconfigs: []\n---\n", "holds no parquet files"),
    ]
    for name, text, message in cases:
        if text is not None:
            (tmp_path / name).write_text(text)
        assert push_cli.main(["--folder", str(tmp_path), "--repo-id", "org/x", "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_push_uploads_exactly_the_folder_to_a_dataset_repo(world_dataset, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return type("Url", (), {"repo_id": repo_id})

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"commit_url": "https://hub/commit/1"})

    monkeypatch.setattr(push_cli, "HfApi", FakeApi)
    folder = world_dataset / "dataset"
    assert push_cli.main(["--folder", str(folder), "--repo-id", "org/t", "--private", "--token", "hf_x"]) == 0
    assert calls[0] == ("init", "hf_x")
    assert calls[1] == ("create_repo", "org/t", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[2][1]
    assert upload["repo_type"] == "dataset" and upload["folder_path"] == folder
    assert sorted(upload["allow_patterns"]) == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
