"""LinCIR's phi (`--lincir`) and a Text-Anchored-Tuned image tower (`--image-tower`) through `scot eval`,
`scot index`, `scot search` and the demo's search."""

import json

import pytest
import torch
from PIL import Image

from modeling_scot import ScotModel
from modeling_scot.cli import main
from modeling_scot.demo.search import DemoInputError, DemoSearch
from modeling_scot.encoding import encode_images
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.scoring import compute_metrics
from modeling_scot.methods import METHOD_NAMES, build_method
from modeling_scot.methods.isa_model import IsaModel
from modeling_scot.methods.lincir_model import LincirModel
from modeling_scot.methods.tat_model import TatConfig, add_tat_adapters, save_tat_adapters, with_tuned_image_tower
from modeling_scot.retrieval.index import GalleryIndex
from modeling_scot.retrieval.query import compose_query
from tests.cli.test_eval_cli import LOADERS
from tests.evaluation.benchmark_fixtures import make_cirr

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30)]


@pytest.fixture
def saved_model(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


@pytest.fixture
def phi_folder(saved_model, tmp_path):
    torch.manual_seed(0)
    LincirModel.from_encoder(ScotModel.from_pretrained(saved_model)).save_pretrained(tmp_path / "phi")
    return str(tmp_path / "phi")


@pytest.fixture
def isa_folder(saved_model, tmp_path):
    torch.manual_seed(0)
    IsaModel.from_encoder(ScotModel.from_pretrained(saved_model)).save_pretrained(tmp_path / "isa")
    return str(tmp_path / "isa")


@pytest.fixture
def tower_folder(saved_model, tmp_path):
    """TAT adapters for the saved model's encoder, with non-zero LoRA B matrices (so the tower really changes)."""
    model = ScotModel.from_pretrained(saved_model)
    config = TatConfig().for_base(model.encoder, saved_model)
    tuned = add_tat_adapters(model.encoder, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    save_tat_adapters(tuned, config, tmp_path / "tower", model.processor)
    return str(tmp_path / "tower")


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    for number, colour in enumerate(COLOURS):
        Image.new("RGB", (24, 20 + number), colour).save(folder / f"{number}.png")
    return folder


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_runs_lincir_and_isa_beside_every_method(saved_model, phi_folder, isa_folder, tmp_path, capsys):
    root, output = make_cirr(tmp_path / "cirr"), tmp_path / "metrics.json"
    code, out, err = run(
        capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root, "--split", "val",
        "--lincir", phi_folder, "--isa", isa_folder, "--output", output, "--cache-dir", tmp_path / "cache",
        "--num-workers", 0, "--dtype", "fp32",
    )  # fmt: skip (fp32: the rows are recomputed below in fp32)
    assert code == 0, err
    report = json.loads(output.read_text())
    assert list(report["methods"]) == list(METHOD_NAMES)
    assert report["settings"]["lincir"] == {"model_path": phi_folder, "chosen_by": "given"}

    split = load_cirr(root, "val")
    model = ScotModel.from_pretrained(saved_model).eval()
    embeds = dict(zip(split.image_paths, encode_images(model, [split.open_image(i) for i in split.image_paths])))
    references = torch.stack([embeds[query.reference] for query in split.queries])
    gallery = torch.stack([embeds[image_id] for image_id in split.gallery])
    queries = LincirModel.from_pretrained(phi_folder, model).compose(references, split.texts)
    expected = compute_metrics(split, (queries @ gallery.T).numpy())
    assert report["methods"]["lincir"] == pytest.approx(expected, abs=0.01)
    references = [split.open_image(query.reference) for query in split.queries]
    queries = IsaModel.from_pretrained(isa_folder, model).compose(references, split.texts)
    expected = compute_metrics(split, (queries @ gallery.T).numpy())
    assert report["methods"]["isa"] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_lincir_and_isa_run_on_every_benchmark(name, saved_model, phi_folder, isa_folder, tmp_path, capsys):
    make, _, split_args = LOADERS[name]
    output = tmp_path / "metrics.json"
    code, _, err = run(
        capsys, "eval", "--model", saved_model, "--benchmark", name, "--data-root", make(tmp_path / name),
        *split_args, "--method", "image", "--method", "lincir", "--method", "isa", "--lincir", phi_folder,
        "--isa", isa_folder, "--output", output, "--cache-dir", tmp_path / "cache", "--num-workers", 0,
    )  # fmt: skip
    assert code == 0, err
    methods = json.loads(output.read_text())["methods"]
    assert list(methods) == ["image", "lincir", "isa"]
    assert list(methods["lincir"]) == list(methods["isa"]) == list(methods["image"])


def test_method_lincir_without_its_folder_is_one_clear_line(saved_model, tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root,
                       "--split", "val", "--method", "lincir")  # fmt: skip
    assert code == 2 and "--method lincir needs --lincir DIR" in err and "Traceback" not in err
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root,
                       "--split", "val", "--method", "isa")  # fmt: skip
    assert code == 2 and "--method isa needs --isa DIR" in err
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root,
                       "--split", "val", "--lincir", tmp_path / "nowhere")  # fmt: skip
    assert code == 2 and "is not a folder" in err


def test_eval_with_a_tuned_image_tower_embeds_references_and_gallery_with_it(
    saved_model, tower_folder, tmp_path, capsys
):
    root, output = make_cirr(tmp_path / "cirr"), tmp_path / "metrics.json"
    code, _, err = run(
        capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root, "--split", "val",
        "--image-tower", tower_folder, "--method", "image", "--output", output, "--cache-dir", tmp_path / "cache",
        "--num-workers", 0,
    )  # fmt: skip
    assert code == 0, err
    split = load_cirr(root, "val")
    images = [split.open_image(image_id) for image_id in split.image_paths]
    untuned = encode_images(ScotModel.from_pretrained(saved_model).eval(), images)
    tuned_model = with_tuned_image_tower(ScotModel.from_pretrained(saved_model), tower_folder).eval()
    tuned = encode_images(tuned_model, images)
    assert not torch.allclose(tuned, untuned, atol=1e-3)
    embeds = dict(zip(split.image_paths, tuned))
    references = torch.stack([embeds[query.reference] for query in split.queries])
    gallery = torch.stack([embeds[image_id] for image_id in split.gallery])
    expected = compute_metrics(split, (references @ gallery.T).numpy())
    assert json.loads(output.read_text())["methods"]["image"] == pytest.approx(expected, abs=0.01)


def test_index_and_search_with_the_tuned_tower_and_lincir(saved_model, tower_folder, phi_folder, image_folder,
                                                         tmp_path, capsys):  # fmt: skip
    index = tmp_path / "index"
    code, _, err = run(capsys, "index", "--model", saved_model, "--images", image_folder, "--output", index,
                       "--image-tower", tower_folder, "--num-workers", 0)  # fmt: skip
    assert code == 0, err
    search = ["search", "--model", saved_model, "--index", index, "--image", image_folder / "0.png", "--text",
              "make it blue", "--json"]  # fmt: skip
    code, _, err = run(capsys, *search)
    assert code == 2 and "encoder" in err and "Traceback" not in err  # an index of the tuned tower, an untuned query
    code, out, err = run(capsys, *search, "--image-tower", tower_folder, "--method", "image", "-k", 1)
    assert code == 0, err
    assert json.loads(out)["results"][0] == {"rank": 1, "id": "0.png", "score": pytest.approx(1.0, abs=1e-4)}
    # lincir needs phi trained with the same encoder: the tuned tower leaves the text tower, so phi, unchanged
    code, out, err = run(capsys, *search, "--image-tower", tower_folder, "--method", "lincir", "--lincir", phi_folder)
    assert code == 0, err
    assert json.loads(out)["method"] == "lincir" and len(json.loads(out)["results"]) == 4


def test_search_with_isa_never_runs_the_large_image_tower(saved_model, isa_folder, image_folder, tmp_path, capsys):
    index = tmp_path / "index"
    assert run(capsys, "index", "--model", saved_model, "--images", image_folder, "--output", index,
               "--num-workers", 0)[0] == 0  # fmt: skip
    model = ScotModel.from_pretrained(saved_model)
    isa = build_method("isa", model_path=isa_folder)
    compose_query(model, image_folder / "1.png", "make it blue", isa)  # loading checks the encoder: one probe image
    calls = []
    model.encoder_adapter.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    query = compose_query(model, image_folder / "2.png", "make it red", isa)
    assert calls == [] and query.query_embeds.shape == (1, 16) and query.image_embeds is None
    code, out, err = run(capsys, "search", "--model", saved_model, "--index", index, "--image", image_folder / "2.png",
                         "--text", "make it red", "--method", "isa", "--isa", isa_folder, "--json")  # fmt: skip
    assert code == 0, err
    _, ids = GalleryIndex.load(index).search(query.query_embeds, 4)
    assert [row["id"] for row in json.loads(out)["results"]] == list(ids[0])


def test_the_demo_offers_lincir_only_with_its_folder(scot_model, phi_folder, image_folder, tmp_path, capsys):
    saved = tmp_path / "model"  # the fixture's folder; phi was made from it
    assert run(capsys, "index", "--model", saved, "--images", image_folder, "--output", tmp_path / "index",
               "--num-workers", 0)[0] == 0  # fmt: skip
    model, index = ScotModel.from_pretrained(saved).eval(), GalleryIndex.load(tmp_path / "index")
    assert "lincir" not in DemoSearch(model, index).methods
    with pytest.raises(DemoInputError, match="unknown method 'lincir'"):
        DemoSearch(model, index).search(image_folder / "1.png", "make it blue", 2, "lincir")
    search = DemoSearch(model, index, method_settings={"lincir": {"model_path": phi_folder}})
    assert search.methods == [name for name in METHOD_NAMES if name != "isa"]
    result = search.search(image_folder / "1.png", "make it blue", 2, "lincir", hide_reference=False)
    assert result.method == "lincir" and len(result.hits) == 2 and result.modality_weight is None
