"""Triplet generation: prompts, validation, the backends (against a local server and a tiny LLM), the resumable CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.llm_server import BAD_JSON_MARK, FakeLLMServer
from hub import generate_triplets as cli
from modeling_scot.triplets.backend import CaptionRequest
from modeling_scot.triplets.chat import NOT_SENT
from modeling_scot.triplets.openai_backend import OpenAIBackend
from modeling_scot.triplets.prompts import EDIT_KINDS, FEW_SHOT_EXAMPLES, PROMPT_VERSION, build_messages, edit_kind
from modeling_scot.triplets.registry import BACKEND_NAMES, get_backend
from modeling_scot.triplets.rules import RulesBackend
from modeling_scot.triplets.shards import iter_shard_rows, read_manifest, scan_shards
from modeling_scot.triplets.validation import (
    REJECTION_REASONS,
    Deduplicator,
    Limits,
    Rejected,
    TripletValidator,
    extract_json_object,
)

REPO = Path(__file__).resolve().parents[2]
GOOD = {"modification": "make the car red", "modified_caption": "a red car on a road", "hard_negatives": ["a blue car"]}


def request(caption="a blue car on a road", source_id="img-1", variant=0):
    return CaptionRequest(source_id, f"{source_id}.jpg", caption, variant)


def run_cli(*argv):
    return cli.main([*map(str, argv), "--no-progress"])


def write(path, text):
    path.write_text(text)
    return path


def shard_rows(folder):
    return list(iter_shard_rows(folder))


def write_jsonl(path, captions, image_prefix="img"):
    lines = [json.dumps({"image": f"{image_prefix}-{i}.jpg", "caption": text}) for i, text in enumerate(captions)]
    return write(path, "\n".join(lines) + "\n")


# prompts and validation


def test_messages_are_few_shot_chat_with_json_answers():
    messages = build_messages("a cat on a sofa", variant=1, num_hard_negatives=2)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(FEW_SHOT_EXAMPLES) + ["user"]
    assert "2 captions" in messages[0]["content"] and "JSON" in messages[0]["content"]
    answers = [json.loads(m["content"]) for m in messages if m["role"] == "assistant"]
    assert all(set(a) == {"modification", "modified_caption", "hard_negatives"} and len(a["hard_negatives"]) == 2 for a in answers)
    assert messages[-1]["content"] == f"Caption: a cat on a sofa\nKind of change: {edit_kind('a cat on a sofa', 1)}"
    assert len({edit_kind("a cat", v) for v in range(len(EDIT_KINDS))}) == len(EDIT_KINDS)
    assert PROMPT_VERSION.startswith("scot-triplets-v")


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        "Sure, here it is:\n```json\n" + json.dumps(GOOD) + "\n```\nHope this helps!",
        "The triplet is " + json.dumps(GOOD) + " -- done.",
    ],
)
def test_one_json_object_is_found_in_fences_or_prose(text):
    assert extract_json_object(text) == GOOD


@pytest.mark.parametrize("text", ["no json here", '{"modification": "x", ', json.dumps(GOOD) + json.dumps(GOOD), "[1, 2]"])
def test_anything_but_one_json_object_is_invalid_json(text):
    with pytest.raises(Rejected) as info:
        extract_json_object(text)
    assert info.value.reason == "invalid_json"


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("I cannot help with that.", "invalid_json"),
        ({"modification": "make the car red"}, "missing_field"),
        ({**GOOD, "modification": 3}, "missing_field"),
        ({**GOOD, "hard_negatives": "a blue car"}, "missing_field"),
        ({**GOOD, "modification": "   "}, "empty_modification"),
        ({**GOOD, "modified_caption": ""}, "empty_modified_caption"),
        ({**GOOD, "modified_caption": "A blue car, on a road!"}, "unchanged_caption"),
        ({**GOOD, "modification": "word " * 41}, "too_long"),
        ({**GOOD, "modified_caption": FEW_SHOT_EXAMPLES[0]["modified_caption"]}, "prompt_copy"),
        ({**GOOD, "modified_caption": "You write training data for composed image retrieval."}, "prompt_copy"),
    ],
)
def test_bad_answers_are_rejected_with_their_reason(answer, reason):
    raw = answer if isinstance(answer, str) else json.dumps(answer)
    with pytest.raises(Rejected) as info:
        TripletValidator(num_hard_negatives=2).parse(raw, request())
    assert info.value.reason == reason and reason in REJECTION_REASONS


def test_hard_negatives_are_cleaned_and_capped_at_k():
    negatives = ["A red car on a road.", "a blue car on a road", "a red bus", "A red  bus!", 7, "", "a red car in a field", "x"]
    record = TripletValidator(num_hard_negatives=2).parse(json.dumps({**GOOD, "hard_negatives": negatives}), request())
    assert record.hard_negatives == ["a red bus", "a red car in a field"]
    assert (record.source_id, record.image, record.caption) == ("img-1", "img-1.jpg", "a blue car on a road")
    assert TripletValidator(num_hard_negatives=0).parse(json.dumps({**GOOD, "hard_negatives": None}), request()).hard_negatives == []
    with pytest.raises(Rejected, match="too_long"):
        TripletValidator(limits=Limits(max_answer_chars=10)).parse(json.dumps(GOOD), request())


def test_deduplication_is_normalised_and_per_image():
    seen = Deduplicator()
    assert seen.add("img-1", "Make the car red.", "A red car on a road")
    assert not seen.add("img-1", "make the car  red", "a red car, on a road!")
    assert seen.add("img-2", "make the car red", "a red car on a road")
    assert len(seen) == 2


def test_registry_builds_backends_by_name():
    assert BACKEND_NAMES == ("rules", "transformers", "openai")
    rules = get_backend("rules", seed=3, num_hard_negatives=2)
    assert isinstance(rules, RulesBackend) and rules.settings()["seed"] == 3
    assert get_backend("openai", model="m", base_url="http://127.0.0.1:9/v1").settings()["prompt_version"] == PROMPT_VERSION
    with pytest.raises(ValueError, match="unknown triplet backend 'gpt'"):
        get_backend("gpt")
    with pytest.raises(ValueError, match="has no option model"):
        get_backend("rules", model="x")


# the openai backend against a local server


def test_openai_backend_retries_then_rejects_malformed_answers(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    script = ["good", "malformed", "429", "500", "fenced", "unchanged"]
    with FakeLLMServer(script=script, retry_after="0.3", api_key="sk-test") as server:
        backend = OpenAIBackend("fake-model", base_url=server.url, concurrency=1, backoff=0.01, num_hard_negatives=2)
        attempts = backend.attempt([request(f"a dog number {i} on the grass", f"img-{i}") for i in range(5)])
    assert [a.reason for a in attempts] == [None, "invalid_json", None, "unchanged_caption", None]
    assert attempts[1].raw_response.startswith("Sure!") and attempts[3].raw_response
    assert [behaviour for _, behaviour in server.log] == script + ["good"]
    times = {behaviour: t for t, behaviour in server.log}
    assert times["500"] - times["429"] >= 0.3  # Retry-After honoured
    assert server.requests == backend.requests_sent == 7
    good = attempts[0].record
    assert good.modified_caption.startswith("a dog number 0 on the grass after we") and len(good.hard_negatives) == 2
    assert len({backend.request_seed(a.request) for a in attempts}) == 5


def test_openai_backend_retries_are_bounded_and_capped():
    with FakeLLMServer(script=["500"] * 10) as server:
        backend = OpenAIBackend("m", base_url=server.url, max_retries=2, backoff=0.01)
        [attempt] = backend.attempt([request()])
    assert attempt.reason == "request_failed" and "3 attempts failed" in attempt.detail and server.requests == 3
    with FakeLLMServer(script=["hang"], hang_seconds=1.0) as server:
        backend = OpenAIBackend("m", base_url=server.url, timeout=0.3, backoff=0.01)
        [attempt] = backend.attempt([request()])
    assert attempt.record is not None and server.requests == 2
    with FakeLLMServer(api_key="right") as server:
        [attempt] = OpenAIBackend("m", base_url=server.url, api_key="wrong").attempt([request()])
    assert attempt.reason == "request_failed" and "HTTP 401" in attempt.detail and server.requests == 1
    with FakeLLMServer(script=["500"] * 10) as server:
        backend = OpenAIBackend("m", base_url=server.url, max_requests=4, max_retries=1, backoff=0.01, concurrency=1)
        attempts = backend.attempt([request(f"caption {i}", f"img-{i}") for i in range(3)])
    assert [a.reason for a in attempts] == ["request_failed", "request_failed", NOT_SENT] and server.requests == 4


def test_openai_backend_requests_overlap():
    with FakeLLMServer(latency=0.25) as server:
        backend = OpenAIBackend("m", base_url=server.url, concurrency=8)
        started = time.monotonic()
        attempts = backend.attempt([request(f"a cat number {i}", f"img-{i}") for i in range(8)])
        elapsed = time.monotonic() - started
    assert all(a.record is not None for a in attempts)
    assert server.max_in_flight >= 4 and elapsed < 8 * 0.25 / 2


# the transformers backend with a tiny random LLM


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling_scot.word_tokenizer import build_word_level_tokenizer

    words = '{ } [ ] : , " modification modified_caption hard_negatives a the dog cat red blue on grass'.split()
    tokenizer = build_word_level_tokenizer(words, model_max_length=4096)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant :{% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_transformers_backend_gibberish_is_rejected_and_counted(tiny_llm, tmp_path, capsys):
    captions = write_jsonl(tmp_path / "captions.jsonl", ["a red dog on the grass", "a blue cat", "", "a dog"])
    argv = ["--backend", "transformers", "--model", tiny_llm, "--captions", captions, "--output", tmp_path / "out"]
    assert run_cli(*argv, "--batch-size", 2, "--max-new-tokens", 12, "--dtype", "float32") == 2
    captured = capsys.readouterr()
    assert "complete: accepted 0, rejected 4" in captured.out
    assert captured.err.splitlines()[-1].startswith("error: no triplet was accepted (accepted 0, rejected 4")
    rows = list(iter_shard_rows(tmp_path / "out"))
    assert [row["status"] for row in rows] == ["rejected"] * 4 and rows[2]["reason"] == "empty_caption"
    assert all(row["reason"] in REJECTION_REASONS for row in rows)
    assert all(isinstance(row["raw_response"], str) for row in rows if row["reason"] != "empty_caption")
    assert {row["generator"] for row in rows} == {"transformers"} and rows[0]["prompt_version"] == PROMPT_VERSION
    assert sum(read_manifest(tmp_path / "out")["rejected"].values()) == 4


# the command line: shards, --limit, kill and resume


def assert_no_duplicates(rows):
    assert [row["position"] for row in rows] == list(range(len(rows)))
    accepted = [(r["source_id"], r["modification"], r["modified_caption"]) for r in rows if r["status"] == "accepted"]
    assert len(accepted) == len(set(accepted))


def kill_after_first_shard(argv, folder):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.generate_triplets", *map(str, argv), "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (folder / "shard-00000.jsonl").exists():
        assert process.poll() is None, "the run ended before its first shard"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def check_kill_and_resume(argv, tmp_path, total):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    kill_after_first_shard([*argv, "--output", killed], killed)
    assert 0 < scan_shards(killed).next_position < total, "the kill did not interrupt the run"
    assert run_cli(*argv, "--output", killed, "--resume") == 0
    assert run_cli(*argv, "--output", reference) == 0
    resumed = shard_rows(killed)
    assert len(resumed) == total and resumed == shard_rows(reference)
    assert_no_duplicates(resumed)
    assert read_manifest(killed)["status"] == "complete"
    return resumed


def test_rules_on_the_world_survive_sigkill_and_resume(tmp_path):
    argv = ["--backend", "rules", "--captions", "world", "--num-scenes", 2000, "--shard-size", 100, "--seed", 1]
    rows = check_kill_and_resume(argv, tmp_path, total=2000)
    assert sum(row["status"] == "accepted" for row in rows) > 1900


def test_openai_run_survives_sigkill_and_resume(tmp_path):
    texts = [f"a photo of dog {i} on the grass" + (f" {BAD_JSON_MARK}" if i % 5 == 0 else "") for i in range(40)]
    captions = write_jsonl(tmp_path / "captions.jsonl", texts)
    with FakeLLMServer(latency=0.1) as server:
        argv = ["--backend", "openai", "--model", "fake", "--base-url", server.url, "--captions", captions]
        argv += ["--batch-size", 4, "--concurrency", 4, "--shard-size", 4]
        rows = check_kill_and_resume(argv, tmp_path, total=40)
    assert sum(row["reason"] == "invalid_json" for row in rows) == 8
    validator = TripletValidator(num_hard_negatives=3)  # re-validate the stored answers without the server
    for row in rows:
        stored = CaptionRequest(row["source_id"], row["image"], row["caption"], row["variant"])
        if row["status"] == "accepted":
            record = validator.parse(row["raw_response"], stored)
            assert [record.modification, record.hard_negatives] == [row["modification"], row["hard_negatives"]]
        else:
            with pytest.raises(Rejected, match=row["reason"]):
                validator.parse(row["raw_response"], stored)


def test_limit_stops_at_accepted_triplets_and_a_resume_raises_it(tmp_path, capsys):
    argv = ["--backend", "rules", "--captions", "world", "--num-scenes", 200, "--variants", 2, "--batch-size", 16]
    assert run_cli(*argv, "--output", tmp_path / "a", "--limit", 25) == 0
    assert "limit_reached: accepted 25" in capsys.readouterr().out
    assert read_manifest(tmp_path / "a")["status"] == "limit_reached" and scan_shards(tmp_path / "a").accepted == 25
    assert run_cli(*argv, "--output", tmp_path / "a", "--limit", 60, "--resume") == 0
    assert run_cli(*argv, "--output", tmp_path / "b", "--limit", 60) == 0
    assert shard_rows(tmp_path / "a") == shard_rows(tmp_path / "b")
    assert scan_shards(tmp_path / "a").accepted == 60


def test_openai_request_cap_stops_and_resume_finishes(tmp_path, capsys):
    captions = write_jsonl(tmp_path / "captions.jsonl", [f"a cat number {i}" for i in range(10)])
    with FakeLLMServer() as server:
        argv = ["--backend", "openai", "--model", "fake", "--base-url", server.url, "--captions", captions]
        assert run_cli(*argv, "--output", tmp_path / "out", "--max-requests", 6, "--concurrency", 1) == 0
        assert "stopped: accepted 6" in capsys.readouterr().out
        assert run_cli(*argv, "--output", tmp_path / "out", "--resume") == 0
    assert server.requests == 10 and scan_shards(tmp_path / "out").accepted == 10


def coco(path, images, annotations):
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda d: d / "missing.json", "captions file not found: "),
        (lambda d: write(d / "c.csv", "path,text\na.jpg,a cat\n"), "has no column 'image' (its columns: path, text)"),
        (
            lambda d: coco(d / "c.json", [{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "caption": "a"}, {"image_id": 1}]),
            "annotations[1] has no 'caption'",
        ),
        (
            lambda d: coco(d / "c.json", [{"id": 1, "file_name": "a.jpg"}], [{"image_id": 2, "caption": "a"}]),
            "annotations[0].image_id 2 is not the id of any entry of images",
        ),
        (lambda d: coco(d / "c.json", [{"id": 1}], []), "images[0] has no 'file_name'"),
        (lambda d: write(d / "c.jsonl", '{"image": "a.jpg"}\n'), "line 1 has no 'caption'"),
    ],
)
def test_bad_captions_give_a_one_line_error(tmp_path, capsys, make_source, message):
    source = make_source(tmp_path)
    backend = ["--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]  # never reached
    assert run_cli(*backend, "--captions", source, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_output_reuse_needs_resume_and_the_same_run(tmp_path, capsys):
    assert run_cli("--backend", "rules", "--captions", write_jsonl(tmp_path / "c.jsonl", ["a cat"]), "--output", tmp_path) == 2
    assert "world scenes only" in capsys.readouterr().err
    argv = ["--backend", "rules", "--captions", "world", "--num-scenes", 5, "--output", tmp_path / "out"]
    assert run_cli(*argv) == 0
    assert run_cli(*argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert run_cli(*argv, "--resume", "--seed", 7) == 2
    assert "backend.seed was 0, now 7" in capsys.readouterr().err
    assert run_cli(*argv, "--resume") == 0
    assert "complete: accepted 5" in capsys.readouterr().out


def test_coco_csv_and_tsv_sources(tmp_path):
    from modeling_scot.triplets.sources import caption_requests, open_captions

    images = [{"id": 7, "file_name": "seven.jpg"}, {"id": 8, "file_name": "eight.jpg"}]
    annotations = [{"image_id": 8, "caption": " a cat "}, {"image_id": 7, "caption": "a dog"}]
    source = open_captions(str(coco(tmp_path / "c.json", images, annotations)))
    assert [(c.source_id, c.image, c.caption) for c in source] == [("8", "eight.jpg", "a cat"), ("7", "seven.jpg", "a dog")]
    (tmp_path / "t.tsv").write_text("file\ttext\tid\na.jpg\ta cat\tx1\n")
    source = open_captions(str(tmp_path / "t.tsv"), image_column="file", caption_column="text", id_column="id")
    requests = list(caption_requests(source, variants=2))
    assert source.count() == 1 and [(r.source_id, r.image, r.variant) for r in requests] == [("x1", "a.jpg", 0), ("x1", "a.jpg", 1)]
    assert source.spec()["kind"] == "table"


def test_one_writer_per_folder_and_stale_temp_files_are_ignored(tmp_path):
    from modeling_scot.triplets.shards import ShardWriter

    writer = ShardWriter.open(tmp_path, {"run": 1}, resume=False)
    with pytest.raises(ValueError, match="another run is writing to"):
        ShardWriter.open(tmp_path, {"run": 1}, resume=True)
    writer.close("complete")
    (tmp_path / "shard-00000.jsonl.tmp").write_text('{"position": 0, "trunc')
    ShardWriter.open(tmp_path, {"run": 1}, resume=True).close("complete")
    assert not (tmp_path / "shard-00000.jsonl.tmp").exists() and scan_shards(tmp_path).next_position == 0
