"""Grid-region referents: occupancy, the region input of the Combiner, hypothesis pooling and its search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modeling_scot import ScotConfig, ScotModel
from modeling_scot.regions import closest_region, grid_region_pixels, pool_hypothesis_scores, region_mask
from modeling_scot.retrieval import GalleryIndex
from modeling_scot.retrieval.query import ComposedQuery, search_query


def _one_object_image(cell: int, grid: int = 3, side: int = 30) -> torch.Tensor:
    """A (3, side, side) image of border colour 0.5 with a square of colour 1 inside `cell`."""
    image = torch.full((3, side, side), 0.5)
    step = side // grid
    row, column = divmod(cell, grid)
    image[:, row * step + 2 : row * step + 6, column * step + 2 : column * step + 6] = 1.0
    return image


@pytest.fixture
def region_model(tiny_clip_dir) -> ScotModel:
    torch.manual_seed(0)
    return ScotModel.from_clip(tiny_clip_dir, region_grid=3, combiner_dropout=0.0).eval()


def test_grid_regions_keep_one_cell_and_mark_only_cells_with_content():
    pixels = torch.stack([_one_object_image(4), _one_object_image(0)])
    regions, occupied = grid_region_pixels(pixels, 3)
    assert regions.shape == (2, 9, 3, 30, 30)
    assert occupied.tolist() == [[i == 4 for i in range(9)], [i == 0 for i in range(9)]]
    assert torch.equal(regions[0, 4], pixels[0])  # the object's own cell keeps everything
    assert (regions[0, 0] == 0.5).all()  # any other cell is the border colour alone


def test_grid_regions_refuse_a_grid_finer_than_the_image():
    with pytest.raises(ValueError, match="region grid"):
        grid_region_pixels(torch.zeros(1, 3, 4, 4), 5)


def test_region_features_are_zero_exactly_on_empty_cells(region_model):
    pixels = torch.stack([_one_object_image(2), _one_object_image(7)])
    # the tiny CLIP takes 32 px images
    pixels = F.pad(pixels, (1, 1, 1, 1), value=0.5)
    embeds = region_model.get_region_features(pixels)
    assert embeds.shape == (2, 9, region_model.config.embed_dim)
    assert region_mask(embeds).tolist() == [[i == 2 for i in range(9)], [i == 7 for i in range(9)]]
    assert torch.allclose(embeds[0, 2].norm(), torch.tensor(1.0))


def test_closest_region_keeps_to_occupied_cells():
    regions = torch.zeros(1, 3, 2)
    regions[0, 1] = torch.tensor([0.0, 1.0])
    regions[0, 2] = torch.tensor([1.0, 0.0])
    assert closest_region(torch.tensor([[1.0, 0.1]]), regions).tolist() == [2]
    assert closest_region(torch.tensor([[-1.0, -1.0]]), regions).tolist() == [1]  # never the empty cell 0


def test_hypothesis_pooling_is_a_soft_maximum_over_allowed_hypotheses():
    scores = torch.tensor([[[0.2, 0.9], [0.8, 0.1], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    pooled = pool_hypothesis_scores(scores, mask, 0.001)
    assert torch.allclose(pooled, torch.tensor([[0.8, 0.9]]), atol=1e-3)


def test_a_region_model_needs_regions_and_a_plain_one_refuses_them(region_model, scot_model):
    image, text = F.normalize(torch.randn(2, 16), dim=-1), F.normalize(torch.randn(2, 16), dim=-1)
    with pytest.raises(ValueError, match="grid regions of the reference"):
        region_model.compose(image, text)
    with pytest.raises(ValueError, match=r"region_embeds must have shape \(2, 9, 16\)"):
        region_model.compose(image, text, torch.zeros(2, 4, 16))
    with pytest.raises(ValueError, match="no region input"):
        scot_model.compose(image, text, torch.zeros(2, 9, 16))


def test_region_config_round_trips_and_rejects_bad_values(tiny_clip_config):
    config = ScotConfig(clip_config=tiny_clip_config.to_dict(), region_grid=4, region_temperature=0.02)
    again = ScotConfig.from_dict(config.to_dict())
    assert (again.region_grid, again.region_temperature) == (4, 0.02)
    for field, value in (("region_grid", -1), ("region_temperature", 0.0)):
        with pytest.raises(ValueError, match=field):
            ScotConfig(clip_config=tiny_clip_config.to_dict(), **{field: value})


def _regions(batch: int, occupied: list[list[int]]) -> torch.Tensor:
    regions = torch.zeros(batch, 9, 16)
    for row, cells in enumerate(occupied):
        regions[row, cells] = F.normalize(torch.randn(len(cells), 16), dim=-1)
    return regions


def test_compose_scores_the_gallery_under_every_occupied_referent(region_model):
    torch.manual_seed(1)
    image, text = F.normalize(torch.randn(2, 16), dim=-1), F.normalize(torch.randn(2, 16), dim=-1)
    regions = _regions(2, [[0, 4], [8]])
    gallery = F.normalize(torch.randn(5, 16), dim=-1)
    with torch.no_grad():
        output = region_model.compose(image, text, regions)
        scores = region_model.score_gallery(output, gallery)
        # each hypothesis is the Combiner given that region as the referent
        for row, cell in ((0, 0), (0, 4), (1, 8)):
            alone = region_model.compose(image[row : row + 1], text[row : row + 1], regions[row : row + 1], regions[row : row + 1, cell])
            assert torch.allclose(output.hypothesis_embeds[row, cell], alone.query_embeds[0], atol=1e-6)
        # the single query takes the occupied region closest to T_m
        picked = closest_region(text, regions)
        assert set(picked.tolist()) <= {0, 4, 8}
        assert torch.allclose(output.query_embeds, output.hypothesis_embeds[torch.arange(2), picked], atol=1e-6)
    per_hypothesis = output.hypothesis_embeds @ gallery.T
    expected_row_1 = per_hypothesis[1, 8]  # one occupied region: its scores, unchanged
    assert torch.allclose(scores[1], expected_row_1, atol=1e-5)
    assert (scores[0] >= per_hypothesis[0, [0, 4]].max(dim=0).values - 1e-6).all()


def test_training_referent_follows_the_caption_loss_direction_and_trains_the_region_input(region_model):
    torch.manual_seed(2)
    region_model.train()
    image, text = F.normalize(torch.randn(4, 16), dim=-1), F.normalize(torch.randn(4, 16), dim=-1)
    regions = _regions(4, [[1, 2], [3, 5], [0], [6, 7]])
    target, caption = F.normalize(torch.randn(4, 16), dim=-1), F.normalize(torch.randn(4, 16), dim=-1)
    output = region_model(image_embeds=image, text_embeds=text, region_embeds=regions, target_embeds=target, caption_embeds=caption)
    assert output.hypothesis_embeds is None
    referent = regions[torch.arange(4), closest_region(caption - target, regions)]
    with torch.no_grad():
        expected = region_model.combiner(image, text, referent)[0]
    assert torch.allclose(output.query_embeds, expected, atol=1e-6)
    output.loss.backward()
    assert region_model.combiner.region_projection.weight.grad.abs().sum() > 0


def test_search_query_pools_hypotheses_as_score_gallery_does(region_model):
    torch.manual_seed(3)
    image, text = F.normalize(torch.randn(1, 16), dim=-1), F.normalize(torch.randn(1, 16), dim=-1)
    regions = _regions(1, [[2, 5, 6]])
    gallery = F.normalize(torch.randn(12, 16), dim=-1)
    ids = [f"img-{i}" for i in range(12)]
    index = GalleryIndex.build(gallery, ids, "exact")
    with torch.no_grad():
        output = region_model.compose(image, text, regions)
        full = region_model.score_gallery(output, gallery)[0]
    hypotheses = output.hypothesis_embeds[0, [2, 5, 6]]
    query = ComposedQuery(output.query_embeds, image, None, hypotheses, region_model.config.region_temperature)
    scores, found = search_query(index, query, 12, exclude=["img-3"])
    order = [ids[i] for i in full.argsort(descending=True).tolist() if i != 3]
    assert found == order
    assert scores == pytest.approx(sorted(full[[i for i in range(12) if i != 3]].tolist(), reverse=True), abs=1e-5)
