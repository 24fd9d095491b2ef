"""The generation command under sources that run out, unusable servers and captions, and SIGKILL at random
moments and during its final writes."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest

from bench.llm_server import FakeLLMServer
from hub import generate_triplets as cli
from modeling_scot.triplets.shards import read_manifest, scan_shards


def run_cli(*argv) -> int:
    return cli.main([*map(str, argv), "--no-progress"])


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the probe is closed


def test_a_limit_beyond_the_source_says_the_source_ran_out(tmp_path, capsys):
    assert run_cli("--backend", "rules", "--captions", "world", "--limit", 3000, "--output", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert out.startswith("source_exhausted: accepted 999, rejected 1")
    assert "the captions ran out after 999 of the 3000 triplets asked by --limit" in out and "--num-scenes" in out
    assert read_manifest(tmp_path / "out")["status"] == "source_exhausted"
    assert run_cli("--backend", "rules", "--captions", "world", "--limit", 999, "--output", tmp_path / "exact") == 0
    assert capsys.readouterr().out.startswith("limit_reached: accepted 999")


@pytest.mark.parametrize("num_captions", [1, 6])
def test_an_unreachable_server_fails_the_run_and_writes_nothing_to_resume_past(tmp_path, capsys, num_captions):
    captions = tmp_path / "c.jsonl"
    rows = [{"image": f"{i}.jpg", "caption": f"a red car {i}"} for i in range(num_captions)]
    captions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["--backend", "openai", "--model", "m", "--captions", captions, "--output", tmp_path / "out", "--max-retries", 0]
    started = time.monotonic()
    assert run_cli(*argv, "--base-url", closed_port_url()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: every request of a batch failed") and "Connection refused" in err and err.count("\n") == 1
    assert time.monotonic() - started < 30
    assert scan_shards(tmp_path / "out").next_position == 0  # the failed requests are asked again on resume
    with FakeLLMServer() as server:
        assert run_cli(*argv, "--base-url", server.url, "--resume") == 0
    assert scan_shards(tmp_path / "out").accepted == num_captions


def test_captions_without_usable_rows_fail_the_run(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "blank.jsonl").write_text("".join(json.dumps({"image": f"{i}.jpg", "caption": "  "}) + "\n" for i in range(3)))
    with FakeLLMServer() as server:
        backend = ["--backend", "openai", "--model", "m", "--base-url", server.url]
        assert run_cli(*backend, "--captions", tmp_path / "empty.jsonl", "--output", tmp_path / "a") == 2
        assert "empty.jsonl holds no caption" in capsys.readouterr().err
        assert not (tmp_path / "a").exists()
        assert run_cli(*backend, "--captions", tmp_path / "blank.jsonl", "--output", tmp_path / "b") == 2
    captured = capsys.readouterr()
    assert "complete: accepted 0, rejected 3 (empty_caption 3)" in captured.out
    assert captured.err.startswith("error: no triplet was accepted") and captured.err.count("\n") == 1
    assert server.requests == 0


# SIGKILL and resume

KILL_ARGV = ["--backend", "rules", "--captions", "world", "--num-scenes", 400, "--shard-size", 25, "--seed", 3]


def _generate_then_exit(argv: list[str], kill_at_replace: int | None) -> None:
    """The forked child: run the command; with `kill_at_replace`, SIGKILL itself instead of the n-th rename of a
    finished temp file (a kill during that write)."""
    if kill_at_replace is not None:
        rename, calls = os.replace, [0]

        def replace(source, target):
            calls[0] += 1
            if calls[0] == kill_at_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(source, target)

        os.replace = replace
    os._exit(run_cli(*argv))


def killed_run(folder: Path, *, after: float | None = None, at_replace: int | None = None) -> None:
    """Run the command on `folder` (resuming) in a forked process and SIGKILL it after `after` seconds or at a rename."""
    child = multiprocessing.get_context("fork").Process(
        target=_generate_then_exit, args=([*KILL_ARGV, "--output", folder, "--resume"], at_replace)
    )
    child.start()
    child.join(timeout=after if after is not None else 120)
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode in (0, -signal.SIGKILL)


def final_files(folder: Path) -> dict[str, bytes]:
    """The files a finished run leaves, by name (the lock file aside)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.name != ".lock"}


def assert_no_partial_file_under_a_final_name(folder: Path) -> None:
    """Every file under a final name is whole: the manifest parses, every shard holds its full rows in order, and
    the manifest lists a prefix of the shards; anything else is a temp file."""
    manifest = read_manifest(folder)
    state = scan_shards(folder)
    assert all(entry["end"] - entry["start"] == 25 for entry in state.shards)
    assert manifest["shards"] == state.shards[: len(manifest["shards"])] and len(state.shards) - len(manifest["shards"]) <= 1
    others = set(final_files(folder)) - {"manifest.json", *(entry["file"] for entry in state.shards)}
    assert all(name.endswith(".tmp") for name in others), others


def test_sigkill_at_random_moments_and_during_the_final_writes_then_resume_gives_the_same_files(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    rename, renames = os.replace, []

    def counted_replace(source, target):
        renames.append(Path(target).name)
        return rename(source, target)

    monkeypatch.setattr(os, "replace", counted_replace)
    started = time.monotonic()
    assert run_cli(*KILL_ARGV, "--output", reference) == 0
    seconds = time.monotonic() - started
    monkeypatch.undo()
    expected = final_files(reference)
    assert renames[-3:] == ["shard-00015.jsonl", "manifest.json", "manifest.json"]

    rng = random.Random(0)
    plans = {
        "random": [{"after": rng.uniform(0.05, 0.6) * seconds} for _ in range(3)],
        "last shard": [{"at_replace": len(renames) - 2}],
        "final manifest": [{"at_replace": len(renames)}],
        "random then final": [{"after": rng.uniform(0.2, 0.8) * seconds}, {"at_replace": 2}],
    }
    interrupted = {name: False for name in plans}
    for name, kills in plans.items():
        folder = tmp_path / name.replace(" ", "-")
        for kill in kills:
            killed_run(folder, **kill)
            if (folder / "manifest.json").exists():
                assert_no_partial_file_under_a_final_name(folder)
                interrupted[name] |= read_manifest(folder)["status"] == "running"
        if name == "final manifest":  # killed with the finished manifest written but not yet renamed
            assert read_manifest(folder)["status"] == "running" and scan_shards(folder).next_position == 400
            assert json.loads((folder / "manifest.json.tmp").read_text())["status"] == "complete"
        assert run_cli(*KILL_ARGV, "--output", folder, "--resume") == 0
        assert final_files(folder) == expected, f"{name}: the resumed run's files differ"
    assert all(interrupted.values()), f"a plan's kills all came after the run ended: {interrupted}"
