"""Rule-written triplets for scenes of the built-in world: the edit engine plays the part of the LLM.

World requests identify their scene by `source_id` (a [`scene_id`]); triplets only ever use training
scenes and training combinations (see `modeling_scot.world.split`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from ..world.captions import caption
from ..world.edits import Edit, sample_edit
from ..world.negatives import hard_negative_captions
from ..world.render import render_scene
from ..world.scene import MAX_OBJECTS, Scene, derived_rng, sample_scene, scene_from_id, scene_id
from ..world.split import is_test_combination, is_test_scene
from .backend import CaptionRequest, TripletBackend
from .record import TripletRecord

RULES_VERSION = "world-rules-1"
EDIT_ATTEMPTS = 50


def training_edit(scene: Scene, rng: random.Random) -> tuple[Edit, Scene] | None:
    """A random edit of `scene` whose result is a training scene reached by a training combination."""
    for _ in range(EDIT_ATTEMPTS):
        edit = sample_edit(scene, rng)
        target = None if edit is None else edit.apply(scene)
        if target is not None and not is_test_scene(target) and not is_test_combination(scene, target):
            return edit, target
    return None


class RulesBackend(TripletBackend):
    """Writes triplets for world scenes with the edit engine: a random edit phrased in one of many ways, the
    paraphrased caption of the edited scene and `num_hard_negatives` near-miss captions.

    Deterministic: the record depends only on the backend seed, the request's `source_id` and `variant`
    (and its `image` and `caption`, which are copied). Returns None for a request whose `source_id` is not a
    world scene id, for a test-partition scene, or (rarely) when no training edit was found.
    """

    name = "rules"

    def __init__(self, seed: int = 0, num_hard_negatives: int = 4) -> None:
        if num_hard_negatives < 0:
            raise ValueError(f"num_hard_negatives must be >= 0, got {num_hard_negatives}")
        self.seed = seed
        self.num_hard_negatives = num_hard_negatives

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": None,
            "prompt_version": RULES_VERSION,
            "temperature": None,
            "seed": self.seed,
            "num_hard_negatives": self.num_hard_negatives,
        }

    def generate(self, requests: Sequence[CaptionRequest]) -> list[TripletRecord | None]:
        return [self._write(request) for request in requests]

    def _write(self, request: CaptionRequest) -> TripletRecord | None:
        try:
            scene = scene_from_id(request.source_id)
        except ValueError:
            return None
        if is_test_scene(scene):
            return None
        rng = derived_rng("rules", self.seed, request.source_id, request.variant)
        found = training_edit(scene, rng)
        if found is None:
            return None
        edit, target = found
        return TripletRecord(
            source_id=request.source_id,
            image=request.image,
            caption=request.caption,
            modification=edit.describe(scene, rng),
            modified_caption=caption(target, rng),
            hard_negatives=hard_negative_captions(scene, target, edit, rng, self.num_hard_negatives),
        )


def generate_world_triplets(
    seed: int,
    num_scenes: int,
    edits_per_scene: int,
    *,
    num_hard_negatives: int = 4,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
    image_size: int = 64,
) -> Iterator[TripletRecord]:
    """Training triplets for `num_scenes` random training scenes, up to `edits_per_scene` per scene.

    Each scene is rendered once, when the iterator reaches it; its triplets share that PIL image (the `image`
    field), its `source_id` (the scene id) and one paraphrase of its caption, as the edits an LLM writes for an
    image of a captioned corpus all start from that image's caption. A scene drawn twice gets a new caption and
    continues its variants, so no triplet repeats. Ready for `datasets.Dataset.from_list(
    [r.to_dict() for r in ...])` with an `Image` feature.
    """
    if num_scenes < 0 or edits_per_scene < 1:
        raise ValueError(f"need num_scenes >= 0 and edits_per_scene >= 1, got {num_scenes}, {edits_per_scene}")
    backend = RulesBackend(seed, num_hard_negatives)
    rng = derived_rng("train-scenes", seed)
    drawn: dict[Scene, int] = {}
    for _ in range(num_scenes):
        scene = sample_scene(rng, min_objects, max_objects)
        while is_test_scene(scene):
            scene = sample_scene(rng, min_objects, max_objects)
        first = drawn.get(scene, 0)
        drawn[scene] = first + edits_per_scene
        image = render_scene(scene, image_size)
        scene_caption = caption(scene, rng)
        requests = [
            CaptionRequest(scene_id(scene), image, scene_caption, variant)
            for variant in range(first, first + edits_per_scene)
        ]
        yield from (record for record in backend.generate(requests) if record is not None)
