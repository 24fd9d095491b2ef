"""Damage to valid files, for the property tests and the reliability bench: JSON edits, byte-level damage, and
edits of a gallery parquet file's rows and of a safetensors file's tensors.

Every mutation takes `choose`, a function picking one item of a sequence: `random.Random(seed).choice` in the
bench, `lambda options: data.draw(st.sampled_from(options))` in hypothesis tests. So both drive one set of
mutations, the bench from a seed and hypothesis with shrinking.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

Choose = Callable[[Sequence], object]

ODD_VALUES = (
    None,
    True,
    0,
    -1,
    2**63,
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "abc",
    "ünï\u2603\u202e",
    [],
    [1, "a"],
    {},
    {"x": 1},
)
"""JSON values of every type, with edge cases (huge ints, NaN, infinity, unicode, empty containers)."""
JSON_EDITS = ("replace", "drop", "rename", "wrap", "repeat", "truncate", "root")
BYTE_EDITS = ("truncate", "flip", "prefix", "empty", "zero_run")
TABLE_EDITS = (
    "nan_rows", "inf_rows", "null_embedding", "null_id", "repeat_id", "drop_column", "retype_column", "no_rows"
)
TENSOR_EDITS = ("drop", "extra", "rename", "reshape", "integer", "nan", "inf", "empty")


def _paths(data: object, path: tuple = ()) -> list[tuple]:
    """Every path (keys and list positions) to a value inside `data`, the root `()` included."""
    found = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*path, key))
    elif isinstance(data, list):
        for position, value in enumerate(data[:8]):
            found += _paths(value, (*path, position))
    return found


def _parent(data: object, path: tuple) -> object:
    for step in path[:-1]:
        data = data[step]
    return data


def mutate_json(data: object, choose: Choose) -> object:
    """A copy of `data` with one edit at one place: a value replaced by an odd one, a key dropped or renamed, a
    value wrapped in a list, a list entry repeated or a list cut, or the whole document replaced."""
    data = copy.deepcopy(data)
    edit, inner = choose(JSON_EDITS), _paths(data)[1:]
    if edit == "root" or not inner:
        return choose(ODD_VALUES)
    path = choose(inner)
    parent, key = _parent(data, path), path[-1]
    value = parent[key]
    if edit == "replace":
        parent[key] = choose(ODD_VALUES)
    elif edit == "drop":
        del parent[key]
    elif edit == "rename" and isinstance(parent, dict):
        parent[f"{key}_renamed"] = parent.pop(key)
    elif edit == "wrap":
        parent[key] = [value]
    elif edit == "repeat" and isinstance(parent, list):
        parent.append(copy.deepcopy(value))
    elif edit == "truncate" and isinstance(value, (list, str)):
        parent[key] = value[: len(value) // 2]
    else:
        parent[key] = choose(ODD_VALUES)
    return data


def mutate_bytes(raw: bytes, choose: Choose) -> bytes:
    """`raw` cut short, with bytes overwritten, with random-looking bytes in front, zeroed in a run, or empty."""
    edit = choose(BYTE_EDITS)
    if edit == "empty" or not raw:
        return b""
    position = choose(range(len(raw)))
    if edit == "truncate":
        return raw[:position]
    if edit == "prefix":
        return bytes(choose(range(256)) for _ in range(8)) + raw[position:]
    damaged = bytearray(raw)
    if edit == "zero_run":
        damaged[position : position + 16] = bytes(len(damaged[position : position + 16]))
    else:
        for _ in range(4):
            damaged[choose(range(len(raw)))] = choose(range(256))
    return bytes(damaged)


def mutate_json_file(path: Path, choose: Choose) -> None:
    """Rewrite the JSON file at `path` with one JSON edit, or with byte-level damage (one time in four, and
    always when the file is no longer JSON)."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if data is None or choose(("json", "json", "json", "bytes")) == "bytes":
        Path(path).write_bytes(mutate_bytes(raw, choose))
    else:
        Path(path).write_text(json.dumps(mutate_json(data, choose)), encoding="utf-8")


def _vector_shape(kind: pa.DataType) -> list[int]:
    """(D,) of a fixed-size float list column, (K, D) of a fixed-size list of them."""
    return [kind.list_size, *_vector_shape(kind.value_type)] if pa.types.is_fixed_size_list(kind) else []


def _embedding_array(embeddings: np.ndarray, mask: pa.Array | None = None) -> pa.Array:
    """(N, D) or (N, K, D) values as the nested fixed-size lists of a gallery file; `mask` nulls whole rows."""
    array = pa.array(embeddings.reshape(-1))
    for size in reversed(embeddings.shape[2:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return pa.FixedSizeListArray.from_arrays(array, embeddings.shape[1], mask=mask)


def mutate_gallery_table(path: Path, choose: Choose) -> None:
    """Rewrite a gallery parquet file (`id`, `embedding`: one vector or K vectors per row) with NaN or infinite
    rows, a null embedding or id, a repeated id, a column dropped or of another type, or no rows."""
    table = pq.read_table(path)
    ids, column = table.column("id").to_pylist(), table.column("embedding").combine_chunks()
    shape = _vector_shape(column.type)
    values = column
    while pa.types.is_fixed_size_list(values.type):
        values = values.flatten()
    embeddings = values.to_numpy().reshape(-1, *shape).copy()
    rows = sorted({choose(range(len(ids))) for _ in range(2)})
    edit = choose(TABLE_EDITS)
    id_array, embedding_array = pa.array(ids, pa.string()), column
    if edit in ("nan_rows", "inf_rows"):
        embeddings[rows] = np.nan if edit == "nan_rows" else np.inf
        embedding_array = _embedding_array(embeddings)
    elif edit == "null_embedding":
        embedding_array = _embedding_array(embeddings, mask=pa.array([row in rows for row in range(len(ids))]))
    elif edit in ("null_id", "repeat_id"):
        replacement = None if edit == "null_id" else ids[0]
        id_array = pa.array([replacement if row in rows else item for row, item in enumerate(ids)], pa.string())
    if edit == "drop_column":
        table = pa.table({choose(("id", "embedding")): id_array})
    elif edit == "retype_column":
        table = pa.table({"id": pa.array(range(len(ids))), "embedding": pa.array([row.tolist() for row in embeddings])})
    else:
        table = pa.table({"id": id_array, "embedding": embedding_array})
        table = table.slice(0, 0) if edit == "no_rows" else table
    pq.write_table(table, path)


def mutate_weights(path: Path, choose: Choose) -> None:
    """Rewrite a safetensors file with a tensor dropped, added, renamed, reshaped, stored as integers, filled
    with NaN or infinity, or emptied; or damage its header bytes."""
    if choose(("tensors", "tensors", "header")) == "header":
        raw = Path(path).read_bytes()
        header_end = 8 + int.from_bytes(raw[:8], "little")
        Path(path).write_bytes(mutate_bytes(raw[:header_end], choose) + raw[header_end:])
        return
    tensors = load_file(str(path))
    name, edit = choose(sorted(tensors)), choose(TENSOR_EDITS)
    tensor = tensors[name]
    if edit == "drop":
        del tensors[name]
    elif edit == "extra":
        tensors[f"{name}.extra"] = torch.zeros(3)
    elif edit == "rename":
        tensors[f"renamed.{name}"] = tensors.pop(name)
    elif edit == "reshape":
        tensors[name] = torch.zeros(tensor.numel() + 1)
    elif edit == "integer":
        tensors[name] = tensor.to(torch.int32)
    elif edit == "empty":
        tensors[name] = torch.zeros(0)
    else:
        tensors[name] = torch.full_like(tensor, torch.nan if edit == "nan" else torch.inf)
    save_file(tensors, str(path), metadata={"format": "pt"})
