import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from modeling_scot import SCOT_VERSION
from modeling_scot.cli import main


@pytest.fixture
def saved_model(scot_model, tmp_path):
    folder = tmp_path / "model"
    scot_model.save_pretrained(folder)
    return folder


def test_embed_images_and_texts(saved_model, scot_model, tmp_path, capsys):
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(images / "b.png")
    Image.new("L", (20, 20), 128).save(images / "nested" / "a.jpg")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "image_embeds.safetensors"
    assert main(["embed", "--model", str(saved_model), "--images", str(images), "--output", str(out), "--batch-size", "1"]) == 0
    with safe_open(str(out), "pt") as handle:
        embeds, ids = handle.get_tensor("embeds"), json.loads(handle.metadata()["ids"])
    assert [p.split("/")[-1] for p in ids] == ["b.png", "a.jpg"]
    assert embeds.shape == (2, 16) and torch.allclose(embeds.norm(dim=-1), torch.ones(2), atol=1e-5)

    texts = tmp_path / "texts.txt"
    texts.write_text("make it red\n\na blue square\n")
    out = tmp_path / "text_embeds.safetensors"
    assert main(["embed", "--model", str(saved_model), "--texts", str(texts), "--output", str(out)]) == 0
    with safe_open(str(out), "pt") as handle:
        assert handle.get_tensor("embeds").shape == (3, 16)
    assert "wrote 3 x 16" in capsys.readouterr().out


def test_embed_with_compiled_towers_equals_eager(saved_model, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("make it red\na blue square\nremove the small circle\n")
    outputs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        outputs[name] = tmp_path / f"{name}.safetensors"
        command = ["embed", "--model", str(saved_model), "--texts", str(texts), "--output", str(outputs[name])]
        assert main([*command, "--dtype", "fp32", *extra]) == 0
    embeds = {}
    for name, out in outputs.items():
        with safe_open(str(out), "pt") as handle:
            embeds[name] = handle.get_tensor("embeds")
    assert embeds["eager"].shape == (3, 16)
    torch.testing.assert_close(embeds["compiled"], embeds["eager"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--images", "/no/such/file.png", "/no/such/dir"], "2 image path(s) do not exist: /no/such/file.png"),
        (["--texts", "/no/such/texts.txt"], "does not exist"),
        (["--images", "IMAGES", "--device", "cuda:0"], "CUDA is not available"),
        (["--texts", "LATIN1"], "is not UTF-8 text: byte 7"),
    ],
)
def test_embed_bad_input_is_one_clear_line(saved_model, tmp_path, capsys, extra, message):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "x.png")
    (tmp_path / "latin1.txt").write_bytes("red caf\u00e9\n".encode("latin-1"))
    folders = {"IMAGES": str(tmp_path / "img"), "LATIN1": str(tmp_path / "latin1.txt")}
    extra = [folders.get(item, item) for item in extra]
    code = main(["embed", "--model", str(saved_model), "--output", str(tmp_path / "o.safetensors"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_embed_corrupt_image_names_the_file(saved_model, tmp_path, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["embed", "--model", str(saved_model), "--images", str(tmp_path / "img"), "--output", str(tmp_path / "o.st")])
    assert code == 2 and "broken.png" in capsys.readouterr().err


def test_embed_rejects_a_clip_folder(tiny_clip_dir, tmp_path, capsys):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "x.png")
    code = main(["embed", "--model", tiny_clip_dir, "--images", str(tmp_path / "img"), "--output", str(tmp_path / "o.st")])
    assert code == 2 and "from_encoder" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert f"scot {SCOT_VERSION}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["embed", "index"])
def test_an_output_of_the_wrong_kind_is_refused_before_any_work(saved_model, tmp_path, capsys, command):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "x.png")
    (tmp_path / "a-file").write_text("kept")
    (tmp_path / "a-folder").mkdir()
    wrong = {"embed": ["a-folder", "a-file/o.safetensors"], "index": ["a-file", "a-file/index"]}[command]
    messages = {"a-folder": "is a folder; give a file path", "a-file": "is a file; give a folder"}
    for output in wrong:
        code = main([command, "--model", str(saved_model), "--images", str(tmp_path / "img"), "--output", str(tmp_path / output)])
        err = capsys.readouterr().err
        expected = messages.get(output, "which is a file, not a folder")
        assert code == 2 and "--output" in err and expected in err and "Traceback" not in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "a-folder", "img", "model"]
    assert (tmp_path / "a-file").read_text() == "kept" and not any((tmp_path / "a-folder").iterdir())


def test_export_world_refuses_an_output_under_a_file(tmp_path, capsys):
    (tmp_path / "a-file").write_text("kept")
    code = main(["export-world", "--output", str(tmp_path / "a-file" / "world"), "--test-queries", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--output" in err and "which is a file, not a folder" in err and "Traceback" not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]
