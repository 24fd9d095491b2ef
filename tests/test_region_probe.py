"""bench/region_probe.py: masked grid regions hold the object of their cell, occupancy finds the cells that hold
something, and the probe reports every row."""

import json

import pytest
import torch

from bench.region_probe import GATED_REFERRING, REFERRING, REFERRING_CLIP, closest_region, main, region_embeds
from modeling_scot import ScotModel
from modeling_scot.encoding import encode_texts
from modeling_scot.world import caption, clip_path, render_scene
from modeling_scot.world.scene import Scene, WorldObject


@pytest.fixture(scope="module")
def world_model():
    return ScotModel.from_clip(clip_path()).eval()


def test_region_of_an_object_matches_its_description_and_empty_cells_match_each_other(world_model):
    objects = (WorldObject("circle", "red", "large", "solid", 0), WorldObject("star", "blue", "large", "outlined", 8))
    regions, occupied = region_embeds(world_model, [render_scene(Scene(objects))], grid=3, batch_size=4)
    regions = regions[0]
    assert regions.shape == (9, world_model.config.embed_dim)
    assert occupied[0].nonzero().flatten().tolist() == [0, 8]
    descriptions = encode_texts(world_model, [caption(Scene((obj,))) for obj in objects], progress=False)
    assert closest_region(descriptions, regions.expand(2, -1, -1)).tolist() == [0, 8]
    only_the_star = torch.tensor([[False] * 8 + [True]]).expand(2, -1)
    assert closest_region(descriptions, regions.expand(2, -1, -1), only_the_star).tolist() == [8, 8]
    empty = regions[1:8]
    assert torch.allclose(empty, empty[:1].expand_as(empty), atol=1e-5)
    assert not torch.allclose(regions[0], regions[8], atol=1e-2)


def test_occupancy_marks_exactly_the_cells_of_small_objects_in_a_batch(world_model):
    scenes = [
        Scene((WorldObject("cross", "white", "small", "outlined", 4),)),
        Scene((WorldObject("triangle", "black", "small", "solid", 2), WorldObject("star", "yellow", "small", "outlined", 6))),
    ]
    _, occupied = region_embeds(world_model, [render_scene(scene) for scene in scenes], grid=3, batch_size=1)
    assert [row.nonzero().flatten().tolist() for row in occupied] == [[4], [2, 6]]


def test_probe_reports_every_row_and_regions_hold_their_objects(tmp_path):
    output = tmp_path / "probe.json"
    arguments = ["--num-scenes", "200", "--epochs", "1", "--batch-size", "64", "--output", str(output)]
    assert main([*arguments, "--referring-clip", str(clip_path())]) == 0
    report = json.loads(output.read_text())
    assert report["train_triplets"] > 500
    gated = (*GATED_REFERRING, REFERRING_CLIP)
    rows = {
        "combiner",
        *(f"combiner + region ({name})" for name in REFERRING),
        *(f"gated combiner + region ({name})" for name in gated),
    }
    assert set(report["recall@1"]) == rows
    for scores in report["recall@1"].values():
        assert "remove" in scores and all(0 <= value <= 100 for value in scores.values())
    assert min(report["object_region_match"].values()) >= 90
    accuracy = report["referring_accuracy"]
    picked_by = {"modification", "modification, occupied cells", f"{REFERRING_CLIP}, occupied cells", "caption loss direction"}
    assert set(accuracy) == picked_by
    # The same CLIP as referring CLIP picks exactly what the modification picks among occupied cells.
    assert accuracy[f"{REFERRING_CLIP}, occupied cells"] == accuracy["modification, occupied cells"]


def test_probe_refuses_a_referring_clip_that_is_not_a_clip_folder(tmp_path):
    with pytest.raises(SystemExit):
        main(["--referring-clip", str(tmp_path)])


def test_probe_refuses_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="exceeds"):
        main(["--num-scenes", "2", "--epochs", "1", "--batch-size", "4096"])
