import os
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from datasets import Dataset

from modeling_scot.triplets import TRIPLET_COLUMNS, TRIPLET_FEATURES, TripletRecord
from modeling_scot.triplets.backend import CaptionRequest, TripletBackend
from modeling_scot.triplets.rules import RULES_VERSION, RulesBackend, generate_world_triplets
from modeling_scot.world import (
    build_benchmark,
    caption,
    is_test_scene,
    parse_caption,
    sample_scene,
    scene_from_id,
    scene_id,
    train_test_overlap,
)
from modeling_scot.world.scene import derived_rng

def rows(records):
    return [{**record.to_dict(), "image": record.image.tobytes()} for record in records]


def training_scene(seed):
    rng = derived_rng("test", seed)
    scene = sample_scene(rng)
    while is_test_scene(scene):
        scene = sample_scene(rng)
    return scene


def test_backend_interface():
    with pytest.raises(TypeError):
        TripletBackend()
    request = CaptionRequest("id", None, "a caption")
    assert request.variant == 0
    with pytest.raises(FrozenInstanceError):
        request.caption = "another"
    backend = RulesBackend(seed=3, num_hard_negatives=2)
    assert isinstance(backend, TripletBackend) and backend.name == "rules"
    assert backend.settings() == {
        "backend": "rules",
        "model": None,
        "prompt_version": RULES_VERSION,
        "temperature": None,
        "seed": 3,
        "num_hard_negatives": 2,
    }
    with pytest.raises(ValueError, match="num_hard_negatives"):
        RulesBackend(num_hard_negatives=-1)


def test_rules_backend_writes_one_deterministic_record_per_request():
    scene = training_scene(0)
    test_scene = next(s for s in (sample_scene(derived_rng("t", i)) for i in range(1000)) if is_test_scene(s))
    requests = [
        CaptionRequest(scene_id(scene), "image.png", caption(scene), variant)
        for variant in range(6)
    ] + [CaptionRequest("photo-1", "image.png", "a dog"), CaptionRequest(scene_id(test_scene), None, "")]
    backend = RulesBackend(seed=1, num_hard_negatives=3)
    records = backend.generate(requests)
    assert len(records) == len(requests) and records[-2:] == [None, None]
    assert records == backend.generate(requests)
    written = records[:6]
    assert len({record.modification for record in written}) > 1
    for record in written:
        assert record.source_id == scene_id(scene) and record.image == "image.png" and record.caption == caption(scene)
        target = parse_caption(record.modified_caption)
        assert target != scene and len(record.hard_negatives) == 3
        assert all(parse_caption(negative) != target for negative in record.hard_negatives)
    assert RulesBackend(seed=2, num_hard_negatives=3).generate(requests[:6]) != written


def test_generated_triplets_are_seeded_and_share_images_per_scene():
    first = list(generate_world_triplets(0, 20, 3, num_hard_negatives=2, image_size=32))
    assert rows(first) == rows(generate_world_triplets(0, 20, 3, num_hard_negatives=2, image_size=32))
    assert rows(first) != rows(generate_world_triplets(1, 20, 3, num_hard_negatives=2, image_size=32))
    assert len(first) == 60
    by_source = {}
    for record in first:
        by_source.setdefault(record.source_id, []).append(record)
        scene = scene_from_id(record.source_id)
        assert parse_caption(record.caption) == scene
        assert record.image.size == (32, 32) and len(record.hard_negatives) == 2
    assert all(len({id(record.image) for record in group}) == 1 for group in by_source.values())
    for bad in (dict(num_scenes=-1), dict(edits_per_scene=0)):
        with pytest.raises(ValueError):
            list(generate_world_triplets(**{"seed": 0, "num_scenes": 1, "edits_per_scene": 1, **bad}))


def test_training_triplets_never_touch_the_test_side():
    records = list(generate_world_triplets(7, 1000, 5))
    assert len(records) >= 4950
    overlap = train_test_overlap(records, build_benchmark(0))
    clean = {"shared_scenes": 0, "test_partition_scenes": 0, "held_out_combinations": 0}
    assert overlap == {"records": len(records), **clean}


def test_overlap_counts_test_records():
    bench = build_benchmark(1, 20, num_distractors=0)
    query = bench.queries[0]
    leaked = RulesBackend().generate([CaptionRequest(scene_id(query.reference), None, "")])
    assert leaked == [None]  # the backend refuses test scenes, so build the leak by hand
    reference, target = query.reference, query.target
    record = TripletRecord(scene_id(reference), None, caption(reference), query.modification, caption(target))
    assert train_test_overlap([record], bench) == {
        "records": 1,
        "shared_scenes": 1,
        "test_partition_scenes": 1,
        "held_out_combinations": 1,
    }


def test_records_fill_a_dataset_with_an_image_feature():
    records = list(generate_world_triplets(2, 5, 2))
    dataset = Dataset.from_list([record.to_dict() for record in records], features=TRIPLET_FEATURES)
    assert tuple(dataset.column_names) == TRIPLET_COLUMNS and len(dataset) == len(records)
    assert dataset[0]["image"].size == (64, 64)


DIGEST = """
import hashlib
from modeling_scot.triplets.rules import generate_world_triplets
from modeling_scot.world import build_benchmark
digest = hashlib.sha256()
for record in generate_world_triplets(1, 10, 2):
    digest.update(repr({**record.to_dict(), "image": record.image.tobytes()}).encode())
bench = build_benchmark(2, 30)
digest.update(repr([(q.modification, q.target_id, q.subset_ids) for q in bench.queries]).encode())
result = digest.hexdigest()
"""


def test_outputs_are_identical_across_processes():
    here = {}
    exec(DIGEST, here)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", DIGEST + "print(result)"], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == here["result"]
