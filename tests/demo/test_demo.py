"""The Gradio demo: served on 127.0.0.1 on a quickly trained quickstart model and queried through gradio_client
and a headless Chromium; `scot demo` argument handling; gallery sources recorded in the index."""

import argparse
import os
import shutil
import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_scot import ScotModel
from modeling_scot.demo import DemoSearch, DemoSettings, create_app, launch_app
from modeling_scot.demo import resources
from modeling_scot.cli.demo import add_demo_parser, server_address
from modeling_scot.demo.examples import world_examples
from modeling_scot.demo.gradio_import import GradioNotInstalledError
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.methods import build_method
from modeling_scot.quickstart import QuickstartSettings, run_quickstart
from modeling_scot.retrieval import GalleryIndex
from modeling_scot.cli.retrieval import add_index_parser
from modeling_scot.world import build_benchmark, render_scene, scene_id

SEED, TEST_QUERIES = 3, 40
SMALL = QuickstartSettings(seed=SEED, num_scenes=150, epochs=2, test_queries=TEST_QUERIES)
BROWSER_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scot_home(tmp_path_factory):
    """$SCOT_HOME holding a small quickstart run, as `scot quickstart` leaves it."""
    home = tmp_path_factory.mktemp("scot-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCOT_HOME", str(home))
        patch.delenv("SCOT_DEMO_MODEL", raising=False)
        patch.delenv("SCOT_DEMO_INDEX", raising=False)
        run_quickstart(home / "quickstart", SMALL, torch.device("cpu"))
        yield home


@pytest.fixture(scope="module")
def server(scot_home):
    """The demo with no settings (the quickstart's model, the world gallery it was tested on), on a free port."""
    app = create_app(DemoSettings())
    url = launch_app(app, "127.0.0.1", free_port(), block=False)
    yield url
    app.close()


@pytest.fixture(scope="module")
def easy_query(scot_home):
    """A benchmark query that SCOT answers at rank 1 (by the widest margin) while the image-only and text-only
    baselines do not, computed with the package directly; with the image-only baseline's rank-1 id."""
    model = ScotModel.from_pretrained(scot_home / "quickstart" / "model").eval()
    benchmark = build_benchmark(SEED, TEST_QUERIES)
    gallery = encode_images(model, [render_scene(scene) for scene in benchmark.gallery], progress=False)
    references = gallery[benchmark.reference_ids]
    texts = encode_texts(model, [query.modification for query in benchmark.queries], progress=False)
    rows = torch.arange(len(benchmark.queries))

    def scores(method: str) -> torch.Tensor:
        result = build_method(method).score(model, references, texts, gallery)
        result[rows, benchmark.reference_ids] = -torch.inf
        return result

    scot, image, text = scores("scot"), scores("image"), scores("text")
    targets = torch.tensor(benchmark.target_ids)
    easy = (scot.argmax(1) == targets) & (image.argmax(1) != targets) & (text.argmax(1) != targets)
    assert easy.any(), "the quickly trained model answers no query that both baselines miss"
    top2 = scot.topk(2, dim=1).values
    row = int(torch.where(easy, top2[:, 0] - top2[:, 1], -torch.inf).argmax())
    with torch.no_grad():
        weight = float(model.compose(references[row : row + 1], texts[row : row + 1]).modality_weight[0])
    image_top1 = scene_id(benchmark.gallery[int(image[row].argmax())])
    return benchmark.queries[row], image_top1, weight


@pytest.fixture
def reference_file(easy_query, tmp_path):
    path = tmp_path / "reference.png"
    render_scene(easy_query[0].reference).save(path)
    return path


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_the_app_has_one_public_endpoint(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/search"}


def test_search_returns_the_target_of_an_easy_query(client, easy_query, reference_file):
    from gradio_client import handle_file

    query, image_top1, weight = easy_query
    gallery, label, report = client.predict(
        handle_file(str(reference_file)), query.modification, 5, "scot", True, api_name="/search"
    )
    assert report["method"] == "scot" and report["hidden"] == [scene_id(query.reference)]
    assert report["results"][0]["id"] == scene_id(query.target)
    assert [row["rank"] for row in report["results"]] == [1, 2, 3, 4, 5]
    assert report["modality_weight"] == pytest.approx(weight, abs=1e-4)
    assert {item["label"]: item["confidence"] for item in label["confidences"]} == pytest.approx(
        {"text": weight, "image": 1 - weight}, abs=1e-4
    )
    assert gallery[0]["caption"].startswith("#1") and len(gallery) == 5
    shown = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert np.array_equal(shown, np.asarray(render_scene(query.target)))

    _, label, report = client.predict(
        handle_file(str(reference_file)), query.modification, 3, "image", True, api_name="/search"
    )
    assert report["results"][0]["id"] == image_top1 != scene_id(query.target)
    assert report["modality_weight"] is None and not label.get("confidences"), label


def test_search_explains_a_missing_image_or_text(client, easy_query, reference_file):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no reference image"):
        client.predict(None, "make it red", 5, "scot", True, api_name="/search")
    with pytest.raises(AppError, match="no modification text"):
        client.predict(handle_file(str(reference_file)), "   ", 5, "slerp", True, api_name="/search")
    *_, report = client.predict(handle_file(str(reference_file)), "", 2, "image", False, api_name="/search")
    assert report["hidden"] == [] and report["results"][0]["id"] == scene_id(easy_query[0].reference)


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """Chromium and chromedriver; a skip without them, or a failure where CI is set."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary and driver:
        return binary, driver
    reason = "headless browser test needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def test_a_query_by_clicking_in_chromium(chromium, server, easy_query, reference_file, tmp_path):
    chromium_path, driver_path = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        wait = WebDriverWait(browser, BROWSER_TIMEOUT)
        browser.get(server)
        wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#search")))
        browser.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(reference_file))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#reference img")))
        browser.find_element(By.CSS_SELECTOR, "#modification textarea").send_keys(easy_query[0].modification)
        browser.find_element(By.CSS_SELECTOR, "#search").click()
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, "#results"), "#10"))
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, "#modality-weight"), "text"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results img")) == 10
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
        assert fetched and [url for url in fetched if not url.startswith((server, "data:", "blob:"))] == []
        screenshot = tmp_path / "demo.png"
        assert browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    assert Image.open(screenshot).width > 0


# ----- scot demo ------------------------------------------------------------------------------------------


@pytest.fixture
def demo_parser():
    parser = argparse.ArgumentParser(prog="scot")
    add_demo_parser(parser.add_subparsers(dest="command"))
    return parser


def test_demo_port_comes_from_the_flag_or_gradio_server_port(demo_parser, monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert server_address(demo_parser.parse_args(["demo"])) == ("127.0.0.1", 7999)
    assert server_address(demo_parser.parse_args(["demo", "--port", "8001", "--host", "0.0.0.0"])) == ("0.0.0.0", 8001)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT='http' is not a port number"):
        server_address(demo_parser.parse_args(["demo"]))
    with pytest.raises(ValueError, match="--port 70000 is not a port number"):
        server_address(demo_parser.parse_args(["demo", "--port", "70000"]))


def test_demo_command_builds_then_serves(demo_parser, monkeypatch):
    import modeling_scot.demo.app as app_module

    calls = []
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7998")
    monkeypatch.setenv("SCOT_DEMO_INDEX", "/from/the/environment")
    monkeypatch.setattr(app_module, "create_app", lambda settings: calls.append(settings) or "app")
    monkeypatch.setattr(app_module, "launch_app", lambda app, host, port: calls.append((app, host, port)))
    args = demo_parser.parse_args(["demo", "--model", "org/scot-world", "--device", "cpu"])
    assert args.handler(args) == 0
    settings = DemoSettings("org/scot-world", "/from/the/environment", device="cpu")
    assert calls == [settings, ("app", "127.0.0.1", 7998)]


def no_model_work(*args, **kwargs):
    raise AssertionError("model work started before the settings were checked")


def test_a_missing_gradio_names_the_extra_before_model_work(monkeypatch):
    import modeling_scot.demo.app as app_module

    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.setattr(app_module, "load_resources", no_model_work)
    with pytest.raises(GradioNotInstalledError, match=r"pip install \"modeling-scot\[demo\]\""):
        create_app(DemoSettings(model="org/scot-world"))


def test_demo_command_rejects_a_missing_index_before_model_work(demo_parser, tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "load_model_and_fingerprint", no_model_work)
    args = demo_parser.parse_args(["demo", "--index", str(tmp_path / "missing"), "--model", "org/scot-world"])
    with pytest.raises(FileNotFoundError, match="index folder .*missing' does not exist: build one with scot index"):
        args.handler(args)
    args = demo_parser.parse_args(["demo", "--model", str(tmp_path / "no-model")])
    with pytest.raises(FileNotFoundError, match="model folder .*no-model' does not exist"):
        args.handler(args)


def test_the_default_model_is_trained_by_the_quickstart_first(scot_home, tmp_path, monkeypatch, capsys):
    trained = []

    def fake_quickstart(folder, settings, device, dtype):
        trained.append(settings)
        shutil.copytree(scot_home / "quickstart" / "model", folder / "model")

    monkeypatch.setattr(resources, "run_quickstart", fake_quickstart)
    folder = tmp_path / "quickstart"
    assert resources.quickstart_model(folder) == folder / "model"
    assert "running the quickstart first" in capsys.readouterr().err
    assert resources.quickstart_model(folder) == folder / "model"
    assert trained == [QuickstartSettings()]
    assert resources.world_benchmark_of(str(folder / "model")) == (0, 1000)
    assert resources.world_benchmark_of(str(scot_home / "quickstart" / "model")) == (SEED, TEST_QUERIES)


# ----- gallery sources ------------------------------------------------------------------------------------


def test_folder_index_records_its_root_and_the_demo_shows_its_images(scot_model, tmp_path, capsys):
    folder = tmp_path / "gallery"
    (folder / "nested").mkdir(parents=True)
    colours = {"a.png": (220, 30, 30), "nested/b.png": (30, 40, 220), "c.png": (240, 240, 240)}
    for name, colour in colours.items():
        Image.new("RGB", (30, 30), colour).save(folder / name)
    scot_model.save_pretrained(tmp_path / "model")
    parser = argparse.ArgumentParser()
    add_index_parser(parser.add_subparsers())
    output = tmp_path / "index"
    args = parser.parse_args(
        ["index", "--model", str(tmp_path / "model"), "--images", str(folder), "--output", str(output), "--num-workers", "0"]
    )
    assert args.handler(args) == 0
    index = GalleryIndex.load(output)
    assert index.source == {"kind": "folder", "root": str(folder.resolve())}

    search = DemoSearch(scot_model.eval(), index)
    assert np.array_equal(np.asarray(search.image("nested/b.png")), np.asarray(Image.open(folder / "nested/b.png")))
    result = search.search(str(folder / "nested/b.png"), "", 3, "image", hide_reference=False)
    assert result.hits[0].id == "nested/b.png" and result.hits[0].score == pytest.approx(1, abs=1e-4)
    assert "nested/b.png" in search.search(str(folder / "nested/b.png"), "", 3, "image").hidden

    embeds = encode_images(scot_model, [folder / "c.png"], progress=False)
    alone = GalleryIndex.build(embeds, ["c.png"], source=index.source)
    result = DemoSearch(scot_model, alone).search(Image.open(folder / "c.png"), "make it red", 5)
    assert result.hits == [] and result.hidden == ["c.png"] and 0 < result.modality_weight < 1


def test_world_examples_are_benchmark_queries_one_per_edit_type(tmp_path):
    source = {"kind": "world", "seed": SEED, "num_queries": TEST_QUERIES, "image_size": 64}
    examples = world_examples(source, tmp_path)
    queries = build_benchmark(SEED, TEST_QUERIES).queries
    edit_types = []
    for path, text in examples:
        shown = np.asarray(Image.open(path).convert("RGB"))
        matches = [q for q in queries if q.modification == text and np.array_equal(shown, render_scene(q.reference))]
        assert matches, f"{path} with {text!r} is no benchmark query"
        edit_types.append(matches[0].edit_type)
    assert len(set(edit_types)) == len(examples) >= 5
    assert world_examples({"kind": "folder", "root": str(tmp_path)}, tmp_path) == []


def test_the_demo_needs_an_index_that_records_its_images(scot_model):
    index = GalleryIndex.build(torch.nn.functional.normalize(torch.randn(3, 16), dim=1), ["a", "b", "c"])
    with pytest.raises(ValueError, match="does not record where its images are: rebuild it with scot index"):
        DemoSearch(scot_model, index)


def test_the_world_index_is_built_once_and_again_when_the_world_changes(scot_home, monkeypatch):
    model, fingerprint = resources.load_model_and_fingerprint(str(scot_home / "quickstart" / "model"), "cpu", "fp32")
    index = resources.world_index(model, fingerprint, SEED, TEST_QUERIES, 64)
    assert index.source == {"kind": "world", "seed": SEED, "num_queries": TEST_QUERIES, "image_size": 64}
    monkeypatch.setattr(resources, "write_index", no_model_work)
    assert resources.world_index(model, fingerprint, SEED, TEST_QUERIES, 64).ids == index.ids
    folder = scot_home / "demo" / f"world-{SEED}-{TEST_QUERIES}-{fingerprint[:16]}"
    stale = torch.nn.functional.normalize(torch.randn(2, index.dim), dim=1)
    GalleryIndex.build(stale, index.ids[:2], model_fingerprint=fingerprint, source=index.source).save(folder)
    with pytest.raises(AssertionError, match="model work started"):
        resources.world_index(model, fingerprint, SEED, TEST_QUERIES, 64)
