"""hub/train_world_clip.py: partial captions are positives of exactly the scenes they describe truly, and the
multi-positive loss is the CLIP loss when each caption has one positive."""

import random

import torch
import torch.nn.functional as F

from hub.train_world_clip import batch_captions, multi_positive_clip_loss
from modeling_scot.world import caption, sample_scene, states_truly
from modeling_scot.world.captions import read_attributes, words


def test_multi_positive_loss_with_one_positive_each_is_the_clip_loss():
    logits = torch.randn(6, 6)
    labels = torch.arange(6)
    clip = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(multi_positive_clip_loss(logits, torch.eye(6, dtype=torch.bool)), clip)


def test_multi_positive_loss_spreads_the_target_over_true_images():
    logits = torch.zeros(2, 3)
    positives = torch.tensor([[True, True, False], [False, False, True]])
    logits[0, :2] = 10.0  # text 0 likes both of its true images equally
    logits[1, 2] = 10.0
    spread = multi_positive_clip_loss(logits, positives)
    logits[0, 1] = -10.0  # now text 0 ignores one of its true images
    assert multi_positive_clip_loss(logits, positives) > spread


def test_batch_captions_marks_every_scene_a_partial_caption_describes_truly():
    rng = random.Random(5)
    scenes = [sample_scene(rng) for _ in range(40)]
    rows = list(range(40))
    texts, positives = batch_captions(scenes, rows, rng, partial_fraction=1.0)
    assert positives.diagonal().all()
    assert positives.sum() > len(rows)  # short captions fit other scenes too
    for text, row in zip(texts, positives):
        assert len(words(text)) >= 2
        for scene, positive in zip(scenes, row.tolist()):
            mentioned_shapes = [word for word in words(text) if read_attributes(word).get("shape")]
            if positive:
                assert all(any(obj.shape == read_attributes(w)["shape"] for obj in scene.objects) for w in mentioned_shapes)


def test_full_captions_only_match_their_own_scene_and_draw_no_extra_numbers():
    scenes = [sample_scene(random.Random(i)) for i in range(8)]
    first, second = random.Random(3), random.Random(3)
    texts, positives = batch_captions(scenes, list(range(8)), first, partial_fraction=0.0)
    assert torch.equal(positives, torch.eye(8, dtype=torch.bool))
    assert texts == [caption(scene, second) for scene in scenes]


def test_states_truly_needs_distinct_objects():
    rng = random.Random(0)
    scene = next(s for s in (sample_scene(rng) for _ in range(200)) if len(s.objects) == 1)
    (obj,) = scene.objects
    assert states_truly(((obj, ()),), scene)
    assert not states_truly(((obj, ()), (obj, ())), scene)  # two circles are not one
    other = obj.with_(colour="red" if obj.colour != "red" else "blue")
    assert not states_truly(((other, ("colour",)),), scene)
    assert states_truly(((other, ("size",)),), scene)
