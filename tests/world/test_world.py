import random
import re
import time

import numpy as np
import pytest
import torch

from modeling_scot.evaluation.metrics import recall_at_k, recall_subset_at_k
from modeling_scot.word_tokenizer import build_word_level_tokenizer
from modeling_scot.world import (
    EDIT_TYPES,
    AddObject,
    ChangeAttribute,
    ComposeEdits,
    MoveObject,
    RemoveObject,
    Scene,
    SwapObjects,
    WorldObject,
    binding_variants,
    build_benchmark,
    caption,
    clip_path,
    hard_negative_captions,
    is_test_combination,
    is_test_scene,
    one_off_variants,
    parse_caption,
    partial_caption,
    read_attributes,
    refer,
    render_scene,
    sample_edit,
    sample_scene,
    scene_from_id,
    scene_id,
    states_truly,
    world_vocabulary,
)
from modeling_scot.world.captions import MAX_CAPTION_WORDS, _split_clauses
from modeling_scot.world.lexicon import target_location
from modeling_scot.world.negatives import near_miss_scenes
from modeling_scot.world.split import change_combinations

ATTRIBUTES = ("shape", "colour", "size", "style")


def obj(shape="circle", colour="red", size="small", style="solid", cell=0):
    return WorldObject(shape, colour, size, style, cell)


def random_edits(seed, count, edit_type=None):
    """(scene, edit, edited) triples from a seeded stream."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        scene = sample_scene(rng)
        edit = sample_edit(scene, rng, edit_type)
        if edit is not None:
            found.append((scene, edit, edit.apply(scene)))
    return found, rng


def appearance(o):
    return tuple(getattr(o, name) for name in ATTRIBUTES)


def differing(first, second):
    """Attribute names (and "cell") in which two objects differ."""
    return [name for name in (*ATTRIBUTES, "cell") if getattr(first, name) != getattr(second, name)]


# ----------------------------------------------------------------------------------------------- scenes


def test_objects_and_scenes_validate_and_are_canonical():
    with pytest.raises(ValueError, match="colour"):
        obj(colour="pink")
    with pytest.raises(ValueError, match="cell"):
        obj(cell=9)
    a, b = obj(cell=4), obj(shape="star", cell=1)
    assert Scene((a, b)) == Scene((b, a)) and hash(Scene((a, b))) == hash(Scene((b, a)))
    assert Scene((a, b)).objects == (b, a)
    with pytest.raises(ValueError, match="share a cell"):
        Scene((a, obj(shape="star", cell=4)))
    with pytest.raises(ValueError, match="1 to 3"):
        Scene(())
    with pytest.raises(ValueError, match="1 to 3"):
        Scene(tuple(obj(cell=c) for c in range(4)))


def test_sample_scene_is_seeded_and_bounded():
    first = [sample_scene(random.Random(7)) for _ in range(3)]
    assert first == [sample_scene(random.Random(7)) for _ in range(3)]
    rng_a, rng_b = random.Random(7), random.Random(8)
    assert [sample_scene(rng_a) for _ in range(20)] != [sample_scene(rng_b) for _ in range(20)]
    rng = random.Random(0)
    counts = {len(sample_scene(rng, 2, 3).objects) for _ in range(200)}
    assert counts == {2, 3}
    with pytest.raises(ValueError, match="min_objects"):
        sample_scene(rng, 0, 2)
    with pytest.raises(ValueError, match="min_objects"):
        sample_scene(rng, 3, 2)


def test_scene_ids_round_trip():
    rng = random.Random(1)
    for _ in range(200):
        scene = sample_scene(rng)
        assert scene_from_id(scene_id(scene)) == scene
        assert re.fullmatch(r"[a-z0-9_-]+", scene_id(scene))
    for bad in ("", "scene", "scene_0-circle-red-small", "photo_0-circle-red-small-solid", "scene_0-circle-pink-x-y"):
        with pytest.raises(ValueError, match="not a world scene id"):
            scene_from_id(bad)


def test_one_off_variants_differ_in_exactly_one_attribute():
    scene = sample_scene(random.Random(3), 3, 3)
    variants = one_off_variants(scene)
    assert len(set(variants)) == len(variants) and scene not in variants
    assert len(variants) == 3 * (5 + 7 + 2 + 1 + 6)  # other shapes, colours, sizes, styles, free cells
    for variant in variants:
        removed = [o for o in scene.objects if o not in variant.objects]
        added = [o for o in variant.objects if o not in scene.objects]
        assert len(removed) == len(added) == 1 and len(differing(removed[0], added[0])) == 1


def test_binding_variants_trade_one_attribute_between_two_objects():
    rng = random.Random(5)
    for _ in range(50):
        scene = sample_scene(rng, 2, 3)
        variants = binding_variants(scene)
        attribute_bags = lambda s: {name: sorted(getattr(o, name) for o in s.objects) for name in (*ATTRIBUTES, "cell")}
        assert scene not in variants and len(set(variants)) == len(variants)
        for variant in variants:
            assert attribute_bags(variant) == attribute_bags(scene)
            removed = [o for o in scene.objects if o not in variant.objects]
            assert len(removed) == 2 and len(variant.objects) == len(scene.objects)
    single = sample_scene(rng, 1, 1)
    assert binding_variants(single) == []


def test_clip_path_points_into_the_package_assets():
    assert clip_path().parts[-3:] == ("modeling_scot", "assets", "world-clip")


# ----------------------------------------------------------------------------------------------- render


def test_render_is_deterministic_rgb_of_the_requested_size():
    scene = sample_scene(random.Random(2), 3, 3)
    image = render_scene(scene)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert image.tobytes() == render_scene(scene).tobytes()
    assert render_scene(scene, image_size=32).size == (32, 32)
    for bad in (8, 64.0):
        with pytest.raises(ValueError, match="image_size"):
            render_scene(scene, image_size=bad)


@pytest.mark.parametrize("attribute", [*ATTRIBUTES, "cell"])
def test_every_attribute_value_renders_differently(attribute):
    values = {"cell": range(9)}.get(attribute) or {
        "shape": ("circle", "square", "triangle", "star", "cross", "diamond"),
        "colour": ("red", "green", "blue", "yellow", "purple", "orange", "white", "black"),
        "size": ("small", "medium", "large"),
        "style": ("solid", "outlined"),
    }[attribute]
    images = [np.asarray(render_scene(Scene((obj(size="medium", cell=4).with_(**{attribute: v}),)))) for v in values]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).sum() > 500, (values[i], values[j])


def test_sizes_and_styles_cover_clearly_different_areas():
    def covered(**attributes):
        pixels = np.asarray(render_scene(Scene((obj(**attributes),))))
        return int((np.abs(pixels.astype(int) - 128).sum(axis=2) > 60).sum())

    small, medium, large = (covered(size=s) for s in ("small", "medium", "large"))
    assert 1.5 * small < medium and 1.5 * medium < large
    assert covered(size="large", style="outlined") < 0.7 * large


def test_render_is_fast():
    scenes = [sample_scene(random.Random(i), 3, 3) for i in range(200)]
    start = time.perf_counter()
    for scene in scenes:
        render_scene(scene)
    assert (time.perf_counter() - start) / len(scenes) < 5e-3


# ----------------------------------------------------------------------------------------------- captions


def test_canonical_caption():
    scene = Scene((obj(), obj(shape="square", colour="blue", size="large", style="outlined", cell=4)))
    assert caption(scene) == "a small solid red circle in the top left and a large outlined blue square in the center"
    assert scene_id(scene) == "scene_0-circle-red-small-solid_4-square-blue-large-outlined"


def test_every_paraphrase_names_every_object_fully():
    rng = random.Random(0)
    for _ in range(2000):
        scene = sample_scene(rng)
        text = caption(scene, rng)
        assert parse_caption(text) == scene, text
        assert len(text.split()) <= MAX_CAPTION_WORDS
    scene = sample_scene(random.Random(5), 3, 3)
    assert len({caption(scene, random.Random(i)) for i in range(20)}) == 20


def test_parse_caption_rejects_partial_descriptions():
    for bad in ("a red circle in the top left", "a small solid red circle", "a picture", "a small small red circle"):
        with pytest.raises(ValueError):
            parse_caption(bad)


def _all_texts(count):
    triples, rng = random_edits(11, count)
    for scene, edit, edited in triples:
        yield caption(scene, rng)
        yield edit.describe(scene, rng)
        yield from hard_negative_captions(scene, edited, edit, rng, 3)


def test_vocabulary_is_closed_and_fits_the_word_tokenizer():
    vocabulary = world_vocabulary()
    assert vocabulary == sorted(set(vocabulary)) and all(re.fullmatch(r"[a-z]+", word) for word in vocabulary)
    texts = list(_all_texts(2000))
    for text in texts:
        tokens = re.findall(r"\w+|[^\w\s]", text.lower())
        assert set(tokens) <= set(vocabulary), (text, set(tokens) - set(vocabulary))
    tokenizer = build_word_level_tokenizer(vocabulary, model_max_length=64)
    ids = tokenizer(texts[:200])["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)


# ----------------------------------------------------------------------------------------------- edits


def test_referring_expressions_pick_out_exactly_one_object():
    rng = random.Random(4)
    for _ in range(300):
        scene = sample_scene(rng, 2, 3)
        target = rng.choice(scene.objects)
        named = read_attributes(refer(target, [scene], rng))
        assert named["shape"] == target.shape
        matches = [o for o in scene.objects if all(getattr(o, k) == v for k, v in named.items())]
        assert matches == [target]
    lone = Scene((obj(),))
    assert refer(obj(), [lone]) == "circle"
    pair = Scene((obj(), obj(colour="blue", cell=1)))
    assert refer(obj(), [pair]) == "red circle"
    twins = Scene((obj(), obj(cell=8)))
    assert refer(obj(), [twins]) == "circle in the top left"


@pytest.mark.parametrize("edit_type", EDIT_TYPES)
def test_every_edit_type_applies_is_undone_and_matches_its_text(edit_type):
    triples, rng = random_edits(edit_type, 60, edit_type)
    for scene, edit, edited in triples:
        assert edit.type_name == edit_type
        assert edited is not None and edited != scene
        assert edit.inverse().apply(edited) == scene
        text = edit.describe(scene)
        assert text and edit.describe(scene, rng)
        before, after = list(scene.objects), list(edited.objects)
        if edit_type in ATTRIBUTES:
            changed = [(a, b) for a, b in zip(before, after) if a != b]
            assert len(before) == len(after) and len(changed) == 1
            assert differing(*changed[0]) == [edit_type]
            assert text.endswith(edit.value)
        elif edit_type == "add":
            assert len(after) == len(before) + 1
            assert caption(Scene((edit.obj,))) in text
        elif edit_type == "remove":
            assert len(after) == len(before) - 1 and edit.subject not in after
        elif edit_type == "move":
            assert sorted(map(appearance, before)) == sorted(map(appearance, after))
            assert edit.subject.with_(cell=edit.cell) in after and text.endswith(target_location(edit.cell))
        elif edit_type == "swap":
            first, second = edit.first, edit.second
            assert first.with_(cell=second.cell) in after and second.with_(cell=first.cell) in after
        else:
            assert " and " in text
            assert edited == edit.second.apply(edit.first.apply(scene))
            assert not set(edit.first.subjects()) & set(edit.second.subjects())


def test_edits_that_do_not_fit_give_none():
    a, b = obj(), obj(shape="star", cell=1)
    scene = Scene((a, b))
    assert ChangeAttribute(a, "colour", "red").apply(scene) is None
    assert MoveObject(a, 1).apply(scene) is None
    assert RemoveObject(a).apply(Scene((a,))) is None
    assert AddObject(obj(cell=2)).apply(Scene((a, b, obj(cell=3)))) is None
    assert SwapObjects(a, a.with_(cell=5)).apply(scene) is None  # not in the scene
    assert SwapObjects(a, obj(cell=1)).apply(Scene((a, obj(cell=1)))) is None  # looks the same: no change
    assert ComposeEdits(RemoveObject(a), AddObject(a)).apply(scene) is None  # back where it started
    assert ComposeEdits(RemoveObject(a), ChangeAttribute(a, "size", "large")).apply(scene) is None  # one object
    assert sample_edit(Scene((a,)), random.Random(0), "remove") is None
    assert sample_edit(Scene((a,)), random.Random(0), "swap") is None
    with pytest.raises(ValueError, match="edit_type"):
        sample_edit(scene, random.Random(0), "rotate")
    with pytest.raises(ValueError, match="atomic"):
        ComposeEdits(ComposeEdits(RemoveObject(a), RemoveObject(b)), RemoveObject(b))
    with pytest.raises(ValueError, match="attribute change"):
        ChangeAttribute(a, "colour", "pink")


def test_modification_phrasings():
    scene = Scene((obj(), obj(shape="square", colour="blue", cell=4)))
    assert ChangeAttribute(scene.objects[0], "colour", "blue").describe(scene) == "make the circle blue"
    assert RemoveObject(scene.objects[1]).describe(scene) == "remove the square"
    assert MoveObject(scene.objects[0], 3).describe(scene) == "move the circle to the middle left"
    assert SwapObjects(*scene.objects).describe(scene) == "swap the circle and the square"
    add = AddObject(obj(shape="star", colour="green", size="large", cell=5))
    assert add.describe(scene) == "add a large solid green star in the middle right"
    both = ComposeEdits(RemoveObject(scene.objects[1]), add)
    assert both.describe(scene) == "remove the square and add a large solid green star in the middle right"
    rng = random.Random(0)
    texts = {ChangeAttribute(scene.objects[0], "colour", "blue").describe(scene, rng) for _ in range(100)}
    assert len(texts) >= 8 and "change the colour of the circle to blue" in texts


def test_compositions_keep_references_unambiguous_after_the_first_edit():
    circle = obj()
    scene = Scene((circle,))
    add_circle = AddObject(obj(colour="blue", cell=8))
    text = ComposeEdits(add_circle, ChangeAttribute(circle, "size", "large")).describe(scene)
    assert text == "add a small solid blue circle in the bottom right and make the red circle large"


# ----------------------------------------------------------------------------------------------- hard negatives


def test_hard_negatives_are_distinct_near_misses_never_the_target():
    triples, rng = random_edits(21, 400)
    for scene, edit, edited in triples:
        negatives = hard_negative_captions(scene, edited, edit, rng, 6)
        parsed = [parse_caption(text) for text in negatives]
        assert len(parsed) == 6 and len(set(parsed)) == 6 and edited not in parsed
        misses, original, variants = near_miss_scenes(scene, edited, edit)
        assert original in ([scene], [])
        assert set(parsed) <= set(misses) | {scene} | set(variants)
        assert set(variants) <= set(one_off_variants(edited))
    with pytest.raises(ValueError, match="k must"):
        hard_negative_captions(scene, edited, edit, rng, -1)


def test_few_hard_negatives_take_one_mistake_of_each_kind_in_order():
    triples, rng = random_edits(22, 200)
    for scene, edit, edited in triples:
        groups = [group for group in near_miss_scenes(scene, edited, edit) if group]
        for k in (1, 2, 3):
            parsed = [parse_caption(text) for text in hard_negative_captions(scene, edited, edit, rng, k)]
            assert len(parsed) == min(k, sum(map(len, groups)))
            for negative, group in zip(parsed, groups):
                assert negative in group


def test_wrong_value_and_wrong_object_near_misses():
    red, blue = obj(), obj(shape="square", colour="blue", cell=4)
    scene = Scene((red, blue))
    edit = ChangeAttribute(red, "colour", "green")
    misses = near_miss_scenes(scene, edit.apply(scene), edit)[0]
    assert Scene((red.with_(colour="yellow"), blue)) in misses  # wrong value
    assert Scene((red, blue.with_(colour="green"))) in misses  # wrong object


# ----------------------------------------------------------------------------------------------- split


def test_change_combinations():
    red, star = obj(), obj(shape="star", colour="green", cell=4)
    scene = Scene((red, star))
    purple = ChangeAttribute(red, "colour", "purple").apply(scene)
    assert ("value", "colour", "purple") in change_combinations(scene, purple) and is_test_combination(scene, purple)
    larger = ChangeAttribute(red, "size", "large").apply(scene)
    assert change_combinations(scene, larger) == {
        ("object", "circle", "red"),
        ("value", "size", "large"),
    }
    assert not is_test_combination(scene, larger)
    yellow_circle = AddObject(obj(colour="yellow", cell=8)).apply(scene)
    assert is_test_combination(scene, yellow_circle)  # held-out (shape, colour) pair


def test_held_out_share_and_test_partition_share():
    triples, _ = random_edits(31, 3000)
    held_out = np.mean([is_test_combination(scene, edited) for scene, _, edited in triples])
    assert 0.2 <= held_out <= 0.35
    scenes = [scene for scene, _, _ in triples]
    assert 0.08 <= np.mean([is_test_scene(scene) for scene in scenes]) <= 0.17
    for scene in scenes[:200]:  # sizes, styles and cells do not change the partition
        moved = Scene(tuple(o.with_(size="large", style="outlined") for o in scene.objects))
        assert is_test_scene(moved) == is_test_scene(scene)


# ----------------------------------------------------------------------------------------------- benchmark


@pytest.fixture(scope="module")
def benchmark():
    return build_benchmark(0)


def test_benchmark_shape_and_ids(benchmark):
    assert len(benchmark.queries) == 1000
    assert 3300 <= len(benchmark.gallery) <= 3600  # <= 1,400 group scenes, 2,000 look-alikes, 100 distractors
    assert len(set(benchmark.gallery)) == len(benchmark.gallery)
    assert {query.edit_type for query in benchmark.queries} == set(EDIT_TYPES)
    for query in benchmark.queries:
        assert benchmark.gallery[query.target_id] == query.target
        assert benchmark.gallery[query.reference_id] == query.reference
        assert query.subset_ids[:2] == (query.target_id, query.reference_id)
        assert len(set(query.subset_ids)) == 6
        assert query.edit.apply(query.reference) == query.target
        assert query.modification == query.modification.strip() and query.modification


def test_benchmark_queries_use_only_held_out_changes_of_test_scenes(benchmark):
    for query in benchmark.queries:
        assert is_test_combination(query.reference, query.target)
        assert is_test_scene(query.reference) and is_test_scene(query.target)
    near_misses = [benchmark.gallery[i] for query in benchmark.queries for i in query.subset_ids[2:]]
    one_attribute_off = [
        scene for query, scene in zip(benchmark.queries, near_misses[::4]) if scene in one_off_variants(query.target)
    ]
    assert len(one_attribute_off) >= len(benchmark.queries) // 2


def test_every_reference_has_lookalikes_that_are_not_answers(benchmark):
    gallery = set(benchmark.gallery)
    answers = {query.target for query in benchmark.queries}
    for query in benchmark.queries:
        lookalikes = [scene for scene in one_off_variants(query.reference) if scene in gallery]
        assert len([scene for scene in lookalikes if scene not in answers]) >= 2
    no_lookalikes = build_benchmark(3, 40, queries_per_target=4, num_distractors=0, lookalikes_per_reference=0)
    assert len(build_benchmark(3, 40, queries_per_target=4, num_distractors=0).gallery) >= len(no_lookalikes.gallery) + 60


def test_benchmark_ids_feed_the_metrics(benchmark):
    targets, references, subsets = benchmark.target_ids, benchmark.reference_ids, benchmark.subset_ids
    oracle = np.zeros((len(targets), len(benchmark.gallery)))
    oracle[np.arange(len(targets)), targets] = 1.0
    assert recall_at_k(oracle, targets, references) == {1: 100.0, 5: 100.0, 10: 100.0, 50: 100.0}
    constant = np.zeros_like(oracle)  # every tie goes against the target
    assert recall_at_k(constant, targets, references, ks=(1,)) == {1: 0.0}
    assert recall_subset_at_k(constant, targets, subsets, references, ks=(4, 5)) == {4: 0.0, 5: 100.0}


def test_benchmark_is_seeded():
    small = build_benchmark(3, 40, queries_per_target=4, num_distractors=5)
    assert small == build_benchmark(3, 40, queries_per_target=4, num_distractors=5)
    assert small != build_benchmark(4, 40, queries_per_target=4, num_distractors=5)
    assert len(small.queries) == 40
    for bad in (dict(num_queries=0), dict(queries_per_target=0), dict(num_distractors=-1), dict(lookalikes_per_reference=-1)):
        with pytest.raises(ValueError):
            build_benchmark(0, **{"num_queries": 10, **bad})


def test_benchmark_with_single_query_targets():
    bench = build_benchmark(5, 7, queries_per_target=1, num_distractors=0)
    assert len(bench.gallery) <= 7 * 8 and all(len(set(q.subset_ids)) == 6 for q in bench.queries)


# ----------------------------------------------------------------------------------------------- metrics

SCORES = [
    [0.9, 0.5, 0.5, 0.1],
    [0.2, 0.8, 0.3, 0.8],
    [0.7, 0.7, 0.7, 0.7],
]
TARGETS = [1, 3, 2]


def test_recall_at_k_counts_ties_against_the_target_and_excludes_references():
    # ranks with exclusions: q0 -> 2 (tie with item 2; item 0 excluded), q1 -> 1 (tied item 1 excluded),
    # q2 -> 2 (tie with item 1; items 0 and 3 excluded)
    exclude = [0, 1, [0, 3]]
    assert recall_at_k(SCORES, TARGETS, exclude, ks=(1, 2, 3)) == pytest.approx({1: 100 / 3, 2: 100.0, 3: 100.0})
    # without exclusions: ranks 3, 2, 4
    assert recall_at_k(SCORES, TARGETS, None, ks=(1, 2, 3, 4)) == pytest.approx(
        {1: 0.0, 2: 100 / 3, 3: 200 / 3, 4: 100.0}
    )
    scores = torch.tensor(SCORES, dtype=torch.bfloat16, requires_grad=True)
    assert recall_at_k(scores, TARGETS, exclude, ks=(1,)) == pytest.approx({1: 100 / 3})


def test_recall_subset_at_k():
    subsets = [[1, 0, 3], [3, 2], [2, 1, 3]]
    # q0: item 0 excluded, item 3 lower -> 1; q1 -> 1; q2: item 3 excluded, item 1 tied -> 2
    result = recall_subset_at_k(SCORES, TARGETS, subsets, [0, 1, [0, 3]], ks=(1, 2))
    assert result == pytest.approx({1: 200 / 3, 2: 100.0})


def test_recall_rejects_bad_inputs():
    with pytest.raises(ValueError, match="excludes its own target"):
        recall_at_k(SCORES, TARGETS, [1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k([[float("nan"), 1.0]], [0], None)
    with pytest.raises(ValueError, match="subset must contain"):
        recall_subset_at_k(SCORES, TARGETS, [[0], [3], [2]], None)
    with pytest.raises(ValueError, match="target_ids"):
        recall_at_k(SCORES, [0, 1], None)
    with pytest.raises(ValueError, match="matrix"):
        recall_at_k([0.1, 0.2], [0], None)
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(SCORES, TARGETS, None, ks=(0,))


def test_partial_captions_state_the_shape_and_only_chosen_details():
    rng = random.Random(8)
    for _ in range(300):
        scene = sample_scene(rng)
        text, statement = partial_caption(scene, rng)
        clauses = [found for found in map(read_attributes, _split_clauses(text)) if found]
        assert 1 <= len(statement) == len(clauses) <= len(scene.objects)
        for found, (obj, details) in zip(clauses, statement):
            assert found == {name: getattr(obj, name) for name in ("shape", *details)}
        assert states_truly(statement, scene)
