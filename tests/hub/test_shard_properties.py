"""Property tests of the dataset builder's shard reader: any shard lines, bytes or field types give rows (and a
dataset) or a ValueError naming the shard file, the line and, for a row with a wrong field, that field."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.build_dataset import build_dataset
from modeling_scot.triplets.shards import FORMAT, ROW_FIELDS, iter_located_rows

PROPERTIES = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
MANIFEST = {
    "format": FORMAT,
    "format_version": 1,
    "status": "complete",
    "run": {
        "backend": {"backend": "openai", "model": "m", "prompt_version": "v1", "temperature": 0.8, "seed": 0},
        "source": {"kind": "table", "path": "/nonexistent/captions.jsonl", "size": 1, "columns": {}},
        "variants": 1,
        "limits": {"max_modification_words": 40, "max_caption_words": 80, "max_answer_chars": 20000},
    },
    "next_position": 0,
}


def good_row(position: int) -> dict:
    return {
        "position": position,
        "source_id": f"img-{position}",
        "image": f"https://example.org/{position}.jpg",
        "caption": "a blue car",
        "variant": 0,
        "status": "accepted",
        "reason": None,
        "detail": "",
        "modification": "make it red",
        "modified_caption": "a red car",
        "hard_negatives": ["a green car"],
        "raw_response": "{}",
        "generator": "openai",
        "model": "m",
        "prompt_version": "v1",
        "temperature": 0.8,
        "seed": 0,
    }


@st.composite
def shard_lines(draw) -> bytes:
    """The bytes of a shard: good rows, some with a field changed or removed, odd JSON values or raw bytes."""
    lines = []
    for position in range(draw(st.integers(0, 5))):
        row = good_row(position)
        kind = draw(st.sampled_from(["good", "good", "field", "missing", "json", "bytes"]))
        if kind == "field":
            row[draw(st.sampled_from(sorted(ROW_FIELDS)))] = draw(JSON)
        elif kind == "missing":
            del row[draw(st.sampled_from(sorted(ROW_FIELDS)))]
        if kind == "json":
            lines.append(json.dumps(draw(JSON)).encode())
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=40)))
        else:
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())).encode())
    return b"".join(line + b"\n" for line in lines)


def shards_folder(root: Path, data: bytes) -> Path:
    folder = root / "shards"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, "next_position": data.count(b"\n")}))
    (folder / "shard-00000.jsonl").write_bytes(data)
    return folder


def assert_names_a_line(err: ValueError, folder: Path, data: bytes) -> None:
    message = str(err)
    found = re.search(rf"{re.escape(str(folder / 'shard-00000.jsonl'))}: line (\d+)", message)
    assert found, message
    number = int(found.group(1))
    lines = data.split(b"\n")
    assert 1 <= number <= len(lines)
    try:
        row = json.loads(lines[number - 1])
    except (ValueError, RecursionError):
        return
    if isinstance(row, dict):
        assert re.search(r"field '(\w+)'", message) and re.search(r"field '(\w+)'", message).group(1) in ROW_FIELDS, message


@PROPERTIES
@given(shard_lines())
@example(b'{"position": 0}\n')
@example(b"\xff\xfe\n")
@example(b"[" * 5000 + b"\n")
def test_the_shard_reader_gives_checked_rows_or_names_file_line_and_field(data):
    with tempfile.TemporaryDirectory() as root:
        folder = shards_folder(Path(root), data)
        try:
            rows = [row for _, row in iter_located_rows(folder)]
        except ValueError as err:
            assert_names_a_line(err, folder, data)
            return
        assert [row["position"] for row in rows] == list(range(len(rows)))
        assert all(isinstance(row[name], ROW_FIELDS[name]) for row in rows for name in ROW_FIELDS)


@PROPERTIES
@given(shard_lines())
def test_the_builder_gives_a_dataset_or_a_value_error_naming_the_shard(data):
    with tempfile.TemporaryDirectory() as root:
        folder = shards_folder(Path(root), data)
        try:
            counts = build_dataset(folder, Path(root) / "dataset", validation_fraction=0, progress=False)
        except ValueError as err:
            if "holds no accepted triplet" in str(err):
                assert str(folder) in str(err)
                return
            assert_names_a_line(err, folder, data)
            return
        assert counts["accepted"] >= 1 and (Path(root) / "dataset" / "README.md").is_file()
