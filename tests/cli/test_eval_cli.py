"""`scot eval` on the standard benchmarks' layouts, `scot score`, and the world's CIRR export."""

import json
import shutil

import pytest
import torch

from tests.evaluation.benchmark_fixtures import make_circo, make_cirr, make_fashioniq, make_genecis
from modeling_scot import ScotModel
from modeling_scot.cli import main
from modeling_scot.encoding import encode_images
from modeling_scot.evaluation.circo import load_circo
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.fashioniq import load_fashioniq
from modeling_scot.evaluation.genecis import load_genecis
from modeling_scot.evaluation.runner import average_reports
from modeling_scot.evaluation.scoring import compute_metrics
from modeling_scot.methods import DEFAULT_METHOD_NAMES as METHOD_NAMES
from modeling_scot.world import clip_path

LOADERS = {
    "cirr": (make_cirr, lambda root: load_cirr(root, "val"), ["--split", "val"]),
    "fashioniq": (make_fashioniq, lambda root: load_fashioniq(root, "val", "dress"), ["--split", "val", "--category", "dress"]),
    "circo": (make_circo, lambda root: load_circo(root, "val"), ["--split", "val"]),
    "genecis": (make_genecis, lambda root: load_genecis(root, "focus_attribute"), ["--split", "focus_attribute"]),
}
EXPECTED_KEYS = {
    "cirr": ["recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1", "recall_subset@2", "recall_subset@3", "avg"],
    "fashioniq": ["recall@10", "recall@50"],
    "circo": ["map@5", "map@10", "map@25", "map@50", "recall@5", "recall@10", "recall@25", "recall@50"],
    "genecis": ["recall@1", "recall@2", "recall@3"],
}


@pytest.fixture
def saved_model(scot_model, tmp_path):
    scot_model.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_eval_runs_every_method_and_matches_direct_scoring(name, saved_model, tmp_path, capsys):
    make, load, split_args = LOADERS[name]
    root = make(tmp_path / name)
    output = tmp_path / "metrics.json"
    code, out, err = run(
        capsys, "eval", "--model", saved_model, "--benchmark", name, "--data-root", root, *split_args,
        "--output", output, "--cache-dir", tmp_path / "cache", "--num-workers", 0, "--dtype", "fp32",
    )  # fp32: the image-only row is recomputed below in fp32
    assert code == 0, err
    report = json.loads(output.read_text())
    assert report["benchmark"] == name and report["model"] == saved_model
    paper_alpha = {"cirr": 0.9, "fashioniq": 0.8, "circo": 0.8, "genecis": 0.8}[name]
    assert report["settings"]["slerp"] == {"alpha": paper_alpha, "chosen_by": "benchmark"}
    assert f"slerp   alpha={paper_alpha}  (benchmark)" in out
    assert list(report["methods"]) == list(METHOD_NAMES)
    for metrics in report["methods"].values():
        assert list(metrics) == EXPECTED_KEYS[name]
        assert all(0 <= value <= 100 for value in metrics.values())
    assert out.splitlines()[0].split()[0] == "method" and len(out.splitlines()) >= len(METHOD_NAMES) + 1

    # the image-only row, recomputed without the gallery cache (GeneCIS: cropped instances)
    split = load(root)
    model = ScotModel.from_pretrained(saved_model).eval()
    images = {image_id: split.open_image(image_id) for image_id in split.image_paths}
    ids = list(images)
    embeds = dict(zip(ids, encode_images(model, [images[i] for i in ids], progress=False)))
    references = torch.stack([embeds[query.reference] for query in split.queries])
    gallery = torch.stack([embeds[image_id] for image_id in split.gallery])
    expected = compute_metrics(split, (references @ gallery.T).numpy())
    assert report["methods"]["image"] == pytest.approx(expected, abs=0.01)


def test_gallery_embeddings_are_cached_per_model_and_image_set(saved_model, tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    argv = ["eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", root, "--split", "val",
            "--method", "image", "--cache-dir", tmp_path / "cache", "--num-workers", 0]
    assert run(capsys, *argv)[0] == 0
    cached = sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("gallery.parquet"))
    assert len(cached) == 1
    first = (tmp_path / "cache").rglob("gallery.parquet").__next__().stat().st_mtime_ns
    assert run(capsys, *argv)[0] == 0
    assert next((tmp_path / "cache").rglob("gallery.parquet")).stat().st_mtime_ns == first


def test_test_splits_write_submission_files(saved_model, tmp_path, capsys):
    cirr, circo = make_cirr(tmp_path / "cirr"), make_circo(tmp_path / "circo")
    common = ["--model", saved_model, "--method", "scot", "--cache-dir", tmp_path / "cache", "--num-workers", 0]
    code, _, err = run(capsys, "eval", "--benchmark", "cirr", "--data-root", cirr, "--split", "test1", *common)
    assert code == 2 and "no public targets" in err and "--save-predictions" in err

    predictions = tmp_path / "predictions"
    assert run(capsys, "eval", "--benchmark", "cirr", "--data-root", cirr, "--split", "test1", *common, "--save-predictions", predictions)[0] == 0
    recall = json.loads((predictions / "scot" / "cirr_test1_recall.json").read_text())
    subset = json.loads((predictions / "scot" / "cirr_test1_recall_subset.json").read_text())
    assert recall["version"] == "rc2" and recall["metric"] == "recall" and subset["metric"] == "recall_subset"
    split = load_cirr(cirr, "test1")
    for query in split.queries:
        assert len(recall[query.query_id]) == min(50, len(split.gallery) - 1)
        assert query.reference not in recall[query.query_id]
        assert len(subset[query.query_id]) == 3 and set(subset[query.query_id]) <= set(query.subset) - {query.reference}

    assert run(capsys, "eval", "--benchmark", "circo", "--data-root", circo, "--split", "test", *common, "--save-predictions", predictions)[0] == 0
    submission = json.loads((predictions / "scot" / "circo_test.json").read_text())
    assert sorted(submission) == [q.query_id for q in load_circo(circo, "test").queries]
    assert all(len(ranking) == 50 and all(isinstance(i, int) for i in ranking) for ranking in submission.values())


def test_missing_images_are_listed_before_the_model_loads(tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    removed = sorted((root / "img_raw" / "dev").glob("*.png"))[:7]
    for path in removed:
        path.unlink()
    code, _, err = run(capsys, "eval", "--model", tmp_path / "no-such-model", "--benchmark", "cirr", "--data-root", root, "--split", "val")
    assert code == 2
    assert "7 of 60 image files are missing" in err and str(removed[0]) in err and "... and 2 more" in err


def test_all_categories_or_tasks_need_every_file(saved_model, tmp_path, capsys):
    root = make_fashioniq(tmp_path / "fiq")
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "fashioniq", "--data-root", root, "--split", "val")
    assert code == 2 and "shirt" in err and err.count("\n") <= 2
    root = make_genecis(tmp_path / "genecis")
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "genecis", "--data-root", root)
    assert code == 2 and "change_attribute" in err


def test_average_over_categories():
    def report(split, category, r10, r50):
        return {"benchmark": "fashioniq", "split": split, "category": category, "queries": 10, "gallery_size": 20,
                "seed": None, "settings": {"scot": {"chosen_by": "benchmark"}}, "methods": {"scot": {"recall@10": r10, "recall@50": r50}}}

    combined = average_reports({"dress": report("val", "dress", 10.0, 40.0), "shirt": report("val", "shirt", 20.0, 45.0),
                                "toptee": report("val", "toptee", 33.0, 50.0)})
    assert combined["split"] == "val" and combined["queries"] == 30 and combined["gallery_size"] == 60
    assert combined["methods"]["scot"] == {
        "dress/recall@10": 10.0, "dress/recall@50": 40.0, "shirt/recall@10": 20.0, "shirt/recall@50": 45.0,
        "toptee/recall@10": 33.0, "toptee/recall@50": 50.0, "average/recall@10": 21.0, "average/recall@50": 45.0,
    }


def test_benchmark_flags_are_checked(saved_model, tmp_path, capsys):
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr")
    assert code == 2 and "needs --data-root" in err
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", tmp_path)
    assert code == 2 and "needs --split" in err
    code, _, err = run(capsys, "eval", "--model", saved_model, "--benchmark", "cirr", "--data-root", tmp_path / "nope", "--split", "val")
    assert code == 2 and "does not exist" in err


# ----- the world's test split in CIRR's layout ---------------------------------------------------------------


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("world-model") / "model"
    ScotModel.from_clip(clip_path(), combiner_dropout=0.0).save_pretrained(folder)
    return str(folder)


def test_cirr_export_of_the_world_scores_like_the_world_benchmark(world_model, tmp_path, capsys):
    queries = 60
    export = tmp_path / "export"
    assert run(capsys, "export-world", "--seed", 3, "--test-queries", queries, "--output", export)[0] == 0
    assert sorted(p.name for p in export.iterdir()) == ["captions", "image_splits", "img_raw"]

    world_json, cirr_json = tmp_path / "world.json", tmp_path / "cirr.json"
    code, _, err = run(capsys, "eval", "--model", world_model, "--benchmark", "world", "--seed", 3, "--test-queries", queries, "--output", world_json)
    assert code == 0, err
    world = json.loads(world_json.read_text())
    code, _, err = run(
        capsys, "eval", "--model", world_model, "--benchmark", "cirr", "--data-root", export, "--split", "val",
        "--slerp-alpha", world["settings"]["slerp"]["alpha"], "--output", cirr_json, "--cache-dir", tmp_path / "cache",
        "--save-predictions", tmp_path / "predictions", "--num-workers", 0,
    )
    assert code == 0, err
    cirr = json.loads(cirr_json.read_text())
    assert world["settings"]["slerp"]["chosen_by"] == "validation" and cirr["settings"]["slerp"]["chosen_by"] == "given"
    assert cirr["queries"] == world["queries"] == queries and cirr["gallery_size"] == world["gallery_size"]
    for method in METHOD_NAMES:
        metrics = cirr["methods"][method]
        assert {key: metrics[key] for key in world["methods"][method]} == pytest.approx(world["methods"][method], abs=0.01), method
        assert metrics["avg"] == pytest.approx((metrics["recall@5"] + metrics["recall_subset@1"]) / 2, abs=0.01)

    # the written val submission scores to the same numbers through `scot score`
    code, out, err = run(
        capsys, "score", "--benchmark", "cirr", "--annotations", export / "captions" / "cap.rc2.val.json",
        "--predictions", tmp_path / "predictions" / "scot" / "cirr_val_recall.json",
        "--subset-predictions", tmp_path / "predictions" / "scot" / "cirr_val_recall_subset.json",
    )
    assert code == 0, err
    scored = json.loads(out)
    assert scored == pytest.approx(cirr["methods"]["scot"], abs=0.01)

    code, _, err = run(capsys, "export-world", "--seed", 3, "--output", export)
    assert code == 2 and "already exists" in err


def test_score_rejects_a_broken_submission(tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    predictions = tmp_path / "recall.json"
    predictions.write_text(json.dumps({"version": "rc2", "metric": "recall", "12345": ["a"]}))
    code, out, err = run(capsys, "score", "--benchmark", "cirr", "--annotations", root / "captions" / "cap.rc2.val.json", "--predictions", predictions)
    assert code == 2 and out == "" and str(predictions) in err
    code, _, err = run(capsys, "score", "--benchmark", "circo", "--annotations", tmp_path / "none.json", "--predictions", predictions)
    assert code == 2 and "--annotations" in err


def test_genecis_rankings_stop_at_each_query_gallery(saved_model, tmp_path, capsys):
    root = make_genecis(tmp_path / "genecis")
    predictions = tmp_path / "predictions"
    code, _, err = run(
        capsys, "eval", "--model", saved_model, "--benchmark", "genecis", "--data-root", root, "--split", "focus_attribute",
        "--method", "scot", "--save-predictions", predictions, "--cache-dir", tmp_path / "cache", "--num-workers", 0,
    )
    assert code == 0, err
    [written] = (predictions / "scot").iterdir()
    rankings = json.loads(written.read_text())
    split = load_genecis(root, "focus_attribute")
    shortest = min(len(query.gallery) for query in split.queries)
    for query in split.queries:
        assert len(rankings[query.query_id]) == shortest and set(rankings[query.query_id]) <= set(query.gallery)


def test_bad_splits_and_output_paths_fail_before_model_work(tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    missing_model = tmp_path / "no-such-model"
    common = ["eval", "--model", missing_model, "--benchmark", "cirr", "--data-root", root]
    (root / "captions" / "cap.rc2.val.json").write_text("[]")
    code, _, err = run(capsys, *common, "--split", "val")
    assert code == 2 and "cap.rc2.val.json: no queries" in err

    small = tmp_path / "small"  # a world export of 3 queries has far fewer than 50 gallery images
    assert run(capsys, "export-world", "--seed", 1, "--test-queries", 3, "--split", "test1", "--output", small)[0] == 0
    code, _, err = run(capsys, "eval", "--model", missing_model, "--benchmark", "cirr", "--data-root", small, "--split", "test1", "--save-predictions", tmp_path / "p")
    assert code == 2 and "too few for submission files that rank 50" in err
    shutil.rmtree(small)

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for flag, value, message in (
        ("--output", tmp_path, "is a folder"),
        ("--output", a_file / "metrics.json", "which is a file, not a folder"),
        ("--save-predictions", a_file, "is a file"),
        ("--cache-dir", a_file, "is a file"),
    ):
        code, _, err = run(capsys, *common, "--split", "test1", flag, value)
        assert code == 2 and flag in err and message in err, (flag, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "cirr"]

    code, _, err = run(capsys, "eval", "--model", missing_model, "--benchmark", "circo", "--data-root", root, "--split", "val", "--category", "dress")
    assert code == 2 and "--category is for fashioniq" in err
    make_circo(tmp_path / "circo")
    code, _, err = run(capsys, "eval", "--model", missing_model, "--benchmark", "circo", "--data-root", tmp_path / "circo", "--split", "val")
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_unreadable_annotation_files_name_the_file(tmp_path, capsys):
    root = make_cirr(tmp_path / "cirr")
    captions = root / "captions" / "cap.rc2.val.json"
    captions.write_bytes(captions.read_bytes().replace(b'"caption": "', b'"caption": "\xe9', 1))
    code, _, err = run(capsys, "eval", "--model", tmp_path / "m", "--benchmark", "cirr", "--data-root", root, "--split", "val")
    assert code == 2 and str(captions) in err and "not UTF-8" in err
    captions.unlink()
    captions.mkdir()
    code, _, err = run(capsys, "eval", "--model", tmp_path / "m", "--benchmark", "cirr", "--data-root", root, "--split", "val")
    assert code == 2 and "is a folder" in err


def test_undecodable_and_misplaced_crops_name_the_image(saved_model, tmp_path, capsys):
    root = make_genecis(tmp_path / "genecis")
    task = root / "genecis" / "focus_attribute.json"
    entries = json.loads(task.read_text())
    entries[0]["target"]["instance_bbox"] = [500, 500, 5, 5]
    task.write_text(json.dumps(entries))
    argv = ["eval", "--model", saved_model, "--benchmark", "genecis", "--data-root", root, "--split", "focus_attribute",
            "--cache-dir", tmp_path / "cache", "--num-workers", 0]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "lies outside the 40x20 image" in err and "12.jpg" in err
    entries[0]["target"]["instance_bbox"] = [float("nan"), 0, 8, 8]
    task.write_text(json.dumps(entries))
    code, _, err = run(capsys, *argv)
    assert code == 2 and "instance_bbox" in err
