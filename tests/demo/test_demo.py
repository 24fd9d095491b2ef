"""The Gradio demo: served on 127.0.0.1 on a quickly trained quickstart model and queried through gradio_client
and a headless Chromium, alone, 50 at a time, with oversized images and with requests for private files;
`scot demo` argument handling; gallery sources recorded in the index; batched searches and result files."""

import argparse
import json
import os
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from bench.demo_load import file_route_probes, large_image, private_files, served_result_paths
from modeling_scot import ScotModel
from modeling_scot.demo import DemoInputError, DemoSearch, DemoSettings, create_app, launch_app
from modeling_scot.demo import resources
from modeling_scot.cli.demo import add_demo_parser, server_address
from modeling_scot.demo.app import result_count, uploaded_file
from modeling_scot.demo.batching import Batcher
from modeling_scot.demo.examples import world_examples
from modeling_scot.demo.gradio_import import GradioNotInstalledError
from modeling_scot.demo.result_images import ResultImages
from modeling_scot.demo.search import compose_queries
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.methods import METHODS, build_method
from modeling_scot.methods.isa_model import IsaModel
from modeling_scot.methods.lincir_model import LincirModel
from modeling_scot.processing_scot import load_image
from modeling_scot.quickstart import QuickstartSettings, run_quickstart
from modeling_scot.retrieval import GalleryIndex, compose_query
from modeling_scot.cli.retrieval import add_index_parser
from modeling_scot.world import build_benchmark, render_scene, scene_from_id, scene_id

SEED, TEST_QUERIES = 3, 40
SMALL = QuickstartSettings(seed=SEED, num_scenes=150, epochs=2, test_queries=TEST_QUERIES)
BROWSER_TIMEOUT = 90
CONCURRENT, K = 50, 10


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
        patch.delenv("SCOT_DEMO_SLERP_ALPHA", raising=False)
        run_quickstart(home / "quickstart", SMALL, torch.device("cpu"))
        yield home


@pytest.fixture(scope="module")
def server(scot_home):
    """The demo with no settings but fp32 weights (the quickstart's model, the world gallery it was tested on; the
    package computes the expected answers in fp32), on a free port."""
    app = create_app(DemoSettings(dtype="fp32"))
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


def test_reports_carry_the_settings_and_slerp_runs_with_the_quickstarts_tuned_alpha(client, easy_query, scot_home):
    from gradio_client import handle_file

    tuned = json.loads((scot_home / "quickstart" / "results.json").read_text())["settings_by_method"]["slerp"]
    assert tuned["chosen_by"] == "validation"
    reference = scot_home / "slerp-reference.png"
    render_scene(easy_query[0].reference).save(reference)
    query = easy_query[0].modification
    _, _, report = client.predict(handle_file(str(reference)), query, 3, "slerp", True, api_name="/search")
    assert report["method"] == "slerp" and report["settings"] == {"alpha": tuned["alpha"]}
    _, _, report = client.predict(handle_file(str(reference)), query, 3, "scot", True, api_name="/search")
    assert report["settings"] == {}


def test_slerp_alpha_comes_from_the_flag_or_the_environment_and_is_checked(monkeypatch, scot_home):
    monkeypatch.setenv("SCOT_DEMO_SLERP_ALPHA", "0.3")
    assert DemoSettings.from_env().method_settings() == {"slerp": {"alpha": 0.3}}
    assert DemoSettings.from_env(slerp_alpha=0.6).slerp_alpha == 0.6
    monkeypatch.setenv("SCOT_DEMO_SLERP_ALPHA", "high")
    with pytest.raises(ValueError, match="SCOT_DEMO_SLERP_ALPHA='high' is not a number"):
        DemoSettings.from_env()
    with pytest.raises(ValueError, match=r"Slerp's alpha must be in \[0, 1\], got 1.5"):
        DemoSettings(slerp_alpha=1.5).check()
    model = str(scot_home / "quickstart" / "model")
    tuned = resources.validation_tuned_settings(model)
    assert set(tuned) == {"slerp"} and set(tuned["slerp"]) == {"alpha"}
    assert resources.validation_tuned_settings(str(scot_home / "nowhere")) == {}


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

    LincirModel.from_encoder(scot_model.eval()).save_pretrained(tmp_path / "private-phi")
    settings = {"slerp": {"alpha": 0.3}, "lincir": {"model_path": str(tmp_path / "private-phi")}}
    chosen = DemoSearch(scot_model.eval(), index, method_settings=settings)
    assert chosen.settings_by_method["slerp"] == {"alpha": 0.3} and chosen.settings_by_method["lincir"] == {}
    report = chosen.search(str(folder / "a.png"), "make it blue", 2, "slerp").report()
    assert report["settings"] == {"alpha": 0.3} and str(tmp_path) not in json.dumps(chosen.settings_by_method)
    with pytest.raises(ValueError, match="slerp alpha must be in"):
        DemoSearch(scot_model, index, method_settings={"slerp": {"alpha": 2.0}})
    other = ScotModel.from_encoder(scot_model.config.encoder_name_or_path)
    with torch.no_grad():
        other.encoder_adapter.token_embedding.weight.add_(0.5)
    with pytest.raises(ValueError, match="is a different one"):  # refused at start, not at the first LinCIR search
        DemoSearch(other, index, method_settings=settings)

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


# ----- load, oversized uploads, private files -------------------------------------------------------------


def search_with(client, reference: str, text: str, k: int = K):
    from gradio_client import handle_file

    return client.predict(handle_file(reference), text, k, "scot", True, api_name="/search")


def test_fifty_concurrent_queries_all_get_their_own_complete_results(server, tmp_path):
    from gradio_client import Client

    queries = build_benchmark(SEED, TEST_QUERIES).queries
    jobs = []
    for number in range(CONCURRENT):
        query = queries[number % len(queries)]
        path = tmp_path / f"{number}.png"
        render_scene(query.reference).save(path)
        jobs.append((str(path), query.modification))
    local = threading.local()

    def search_job(job):
        if not hasattr(local, "client"):
            local.client = Client(server, verbose=False, ssl_verify=False)
        gallery, _, report = search_with(local.client, *job)
        return gallery, report

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(search_job, jobs))
    for (gallery, report), (reference, text) in zip(results, jobs):
        assert [row["rank"] for row in report["results"]] == list(range(1, K + 1)) and len(gallery) == K
        for item, row in zip(gallery, report["results"]):
            shown = np.asarray(Image.open(item["image"]).convert("RGB"))
            assert np.array_equal(shown, np.asarray(render_scene(scene_from_id(row["id"])))), (reference, text, row)


@pytest.mark.parametrize("side", [10_000, 15_000], ids=["100MP", "225MP-bomb"])
def test_images_over_the_pixel_limit_are_refused_before_decoding(client, tmp_path, side):
    from gradio_client.exceptions import AppError

    path = large_image(tmp_path, side)
    with pytest.raises(ValueError, match="(?i)pixel"):
        load_image(path)  # the CLI's loader refuses it: the page must too, with its message
    started = time.monotonic()
    with pytest.raises(AppError, match="(?i)reference image.*pixel"):
        search_with(client, str(path), "make it red")
    assert time.monotonic() - started < 5, "the upload was decoded before it was refused"


def test_the_search_reads_only_files_uploaded_to_the_app(scot_home, tmp_path):
    upload_folder = tmp_path / "uploads"
    (upload_folder / "abc").mkdir(parents=True)
    inside = upload_folder / "abc" / "reference.png"
    inside.write_bytes(b"png")
    assert uploaded_file({"path": str(inside)}, str(upload_folder)) == str(inside)
    assert uploaded_file(None, str(upload_folder)) is None
    model = scot_home / "quickstart" / "model" / "model.safetensors"
    for payload in ({"path": str(model)}, {"path": f"{upload_folder}/abc/../../../{model}"}, {"path": 3}, str(inside)):
        with pytest.raises(DemoInputError, match="must be a file uploaded to this app"):
            uploaded_file(payload, str(upload_folder))
    (upload_folder / "link.png").symlink_to(model)
    with pytest.raises(DemoInputError, match="must be a file uploaded to this app"):
        uploaded_file({"path": str(upload_folder / "link.png")}, str(upload_folder))


def test_result_counts_are_whole_numbers_in_range():
    assert result_count(5, 50) == 5 and result_count(5.0, 50) == 5 and result_count(50, 50) == 50
    for bad in (0, 51, 2.5, float("nan"), float("inf"), True, "5", None):
        with pytest.raises(DemoInputError, match="whole number from 1 to 50"):
            result_count(bad, 50)


def test_no_private_file_is_served_through_any_file_route(server, client, scot_home, reference_file, easy_query):
    gallery, *_ = search_with(client, str(reference_file), easy_query[0].modification, 3)
    served = served_result_paths(server, (str(reference_file), easy_query[0].modification))
    results_folder = {str(Path(unquote(path.split("=", 1)[1])).parent) for path in served}
    assert len(results_folder) == 1 and len(gallery) == 3
    assert Path(next(iter(results_folder))).parent == (scot_home / "demo" / "results").resolve()
    secrets = private_files(scot_home / "quickstart" / "model", scot_home)
    assert {"index.json", "model.safetensors", "config.json", "passwd"} <= {path.name for path in secrets}
    probes = file_route_probes(server, secrets, sorted(results_folder), served)
    assert probes["tried"] >= 100 * len(secrets), probes
    assert probes["leaked"] == 0 and probes["refused"] == probes["tried"], probes
    assert probes["upload_kept_in_folder"] and probes["served_ok"] == probes["served"] > 0, probes


# ----- batched searches and result files ------------------------------------------------------------------


def test_concurrent_calls_are_batched_and_each_gets_its_own_result():
    release, sizes = threading.Event(), []

    def run_batch(numbers):
        release.wait(10)
        sizes.append(len(numbers))
        return [number * 2 for number in numbers]

    batcher = Batcher(run_batch, max_batch_size=8)
    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(batcher, number) for number in range(30)]
        time.sleep(0.2)  # the first batch holds the worker while the others queue up
        release.set()
        assert [future.result() for future in futures] == [number * 2 for number in range(30)]
    assert sum(sizes) == 30 and max(sizes) == 8 and len(sizes) < 30


def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs():
    def run_batch(numbers):
        if 13 in numbers:
            raise ValueError("unlucky")
        return numbers if 7 not in numbers else numbers[:-1]

    batcher = Batcher(run_batch, max_batch_size=1)
    with pytest.raises(ValueError, match="unlucky"):
        batcher(13)
    with pytest.raises(RuntimeError, match="a batch of 1 requests gave 0 results"):
        batcher(7)
    assert batcher(3) == 3
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        Batcher(run_batch, max_batch_size=0)


def test_batched_queries_match_one_at_a_time(scot_model, tmp_path):
    scot_model.eval()
    LincirModel.from_encoder(scot_model).save_pretrained(tmp_path / "phi")
    IsaModel.from_encoder(scot_model).save_pretrained(tmp_path / "isa")
    settings = {"lincir": {"model_path": str(tmp_path / "phi")}, "isa": {"model_path": str(tmp_path / "isa")}}
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20 + 3 * i, 24, 3), dtype=np.uint8)) for i in range(12)]
    texts = ["make it red", "a big blue circle", "", "remove the star", "two small squares", "green"] * 2
    methods = [list(METHODS)[i % len(METHODS)] for i in range(12)]
    batch = compose_queries(scot_model, images, texts, methods, settings)
    for batched, image, text, method in zip(batch, images, texts, methods):
        alone = compose_query(scot_model, image, text, build_method(method, **settings.get(method, {})))
        assert torch.allclose(batched.query_embeds, alone.query_embeds, atol=1e-5), method
        if alone.image_embeds is not None:  # ISA's query never runs the large image tower
            assert torch.allclose(batched.image_embeds, alone.image_embeds, atol=1e-5)
        if alone.modality_weight is None:
            assert batched.modality_weight is None
        else:
            assert batched.modality_weight == pytest.approx(alone.modality_weight, abs=1e-5)


def test_result_images_are_written_once_and_follow_changed_files(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / "a.png")
    results = ResultImages({"kind": "folder", "root": str(folder)}, tmp_path / "results")
    first = results.path("a.png")
    assert results.path("a.png") == first and first.parent == results.folder
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(folder / "a.png")))
    written = first.stat().st_mtime_ns
    assert results.path("a.png").stat().st_mtime_ns == written
    Image.new("RGB", (9, 9), (0, 0, 200)).save(folder / "a.png")
    changed = results.path("a.png")
    assert changed != first and Image.open(changed).size == (9, 9)
    world = ResultImages({"kind": "world", "seed": 0, "num_queries": 5, "image_size": 64}, tmp_path / "results")
    scene = build_benchmark(0, 5).gallery[0]
    assert np.array_equal(np.asarray(Image.open(world.path(scene_id(scene)))), np.asarray(render_scene(scene)))
    assert world.folder != results.folder
    assert {path.suffix for path in results.folder.iterdir()} == {".png"}
