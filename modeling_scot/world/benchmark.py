"""A composed image retrieval benchmark in the world, built from held-out scenes and held-out combinations.

Queries come in groups around a target scene T: each reference is T with one change undone, the query's
modification redoes it, and every change is held out (see `modeling_scot.world.split`). A group holds T, its
references and one or more scenes equal to T but for one attribute of one object; each query's subset (for
Recall_subset) is its target, its reference and 4 other scenes of its group. As in CIRR, whose galleries hold
images that look like each reference, the gallery also holds 2 look-alikes of every reference (the reference
with one attribute of one object changed, never a group scene), so the image closest to the reference is
rarely the answer. Edit types are balanced. With the defaults, 1,000 queries share 200 targets and the gallery
holds the (up to 1,400) distinct group scenes, 2,000 reference look-alikes and 100 random distractors.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .captions import parse_caption
from .edits import EDIT_TYPES, Edit, sample_edit
from .scene import MAX_OBJECTS, Scene, derived_rng, one_off_variants, sample_scene, scene_from_id
from .split import is_test_combination, is_test_scene

if TYPE_CHECKING:
    from ..triplets.record import TripletRecord

SUBSET_NEAR_MISSES = 4
REFERENCE_LOOKALIKES = 2
ATTEMPTS_PER_TYPE = 20
UNDO_TYPES = {"add": "remove", "remove": "add"}
"""The edit type that undoes each type (every other type undoes itself)."""
FIRST_QUERY_ATTEMPTS = 1000
GROUP_ATTEMPTS_PER_QUERY = 20


@dataclass(frozen=True)
class WorldQuery:
    """A query (reference scene + modification) and its answer; ids index `WorldBenchmark.gallery`."""

    reference: Scene
    modification: str
    target: Scene
    edit: Edit
    reference_id: int
    target_id: int
    subset_ids: tuple[int, ...]
    """The target, the reference, then 4 near misses."""

    @property
    def edit_type(self) -> str:
        return self.edit.type_name


@dataclass(frozen=True)
class WorldBenchmark:
    """Queries and a gallery of distinct scenes; a scene's gallery id is its position in `gallery`."""

    seed: int
    queries: tuple[WorldQuery, ...]
    gallery: tuple[Scene, ...]

    @property
    def target_ids(self) -> list[int]:
        return [query.target_id for query in self.queries]

    @property
    def reference_ids(self) -> list[int]:
        return [query.reference_id for query in self.queries]

    @property
    def subset_ids(self) -> list[tuple[int, ...]]:
        return [query.subset_ids for query in self.queries]

    def query_scenes(self) -> frozenset[Scene]:
        """Every reference and target scene of the queries."""
        return frozenset(scene for query in self.queries for scene in (query.reference, query.target))


@dataclass(frozen=True)
class _Group:
    target: Scene
    references: tuple[tuple[Scene, Edit], ...]
    near_misses: tuple[Scene, ...]
    lookalikes: tuple[Scene, ...]

    def scenes(self) -> tuple[Scene, ...]:
        references = (reference for reference, _ in self.references)
        return (self.target, *references, *self.near_misses, *self.lookalikes)


def _draw_reference(
    rng: random.Random, target: Scene, members: set[Scene], edit_type: str
) -> tuple[Scene, Edit] | None:
    """A test scene (not in `members`) from which an `edit_type` edit with a held-out change reaches `target`."""
    for _ in range(ATTEMPTS_PER_TYPE):
        undo = sample_edit(target, rng, UNDO_TYPES.get(edit_type, edit_type))
        reference = None if undo is None else undo.apply(target)
        if reference is not None and reference not in members and is_test_scene(reference):
            if is_test_combination(reference, target):
                return reference, undo.inverse()
    return None


def _first_query(
    rng: random.Random, type_counts: Counter[str], min_objects: int, max_objects: int
) -> tuple[Scene, Edit, Scene]:
    """(reference, edit, target): test scenes one held-out change apart, of the least used edit type found."""
    for edit_type in sorted(EDIT_TYPES, key=lambda name: type_counts[name]):
        for _ in range(FIRST_QUERY_ATTEMPTS):
            reference = sample_scene(rng, min_objects, max_objects)
            if not is_test_scene(reference):
                continue
            for _ in range(ATTEMPTS_PER_TYPE):
                edit = sample_edit(reference, rng, edit_type)
                target = None if edit is None else edit.apply(reference)
                if target is not None and is_test_scene(target) and is_test_combination(reference, target):
                    return reference, edit, target
    raise RuntimeError(f"no held-out query between test scenes of {min_objects} to {max_objects} objects found")


def _draw_lookalikes(rng: random.Random, references: list[Scene], members: set[Scene], count: int) -> list[Scene]:
    """Up to `count` one-off variants of each reference that are not in `members`."""
    lookalikes: list[Scene] = []
    for reference in references:
        variants = [scene for scene in one_off_variants(reference) if scene not in members]
        lookalikes += rng.sample(variants, min(count, len(variants)))
    return lookalikes


def _draw_group(
    rng: random.Random,
    queries: int,
    type_counts: Counter[str],
    min_objects: int,
    max_objects: int,
    lookalikes_per_reference: int,
) -> _Group | None:
    """`queries` queries sharing a target: the first of the least used edit type so far (`type_counts`), the
    others of the least used types the target allows; None if it allows too few."""
    reference, edit, target = _first_query(rng, type_counts, min_objects, max_objects)
    counts = Counter(type_counts)
    counts[edit.type_name] += 1
    members = {target, reference}
    references = [(reference, edit)]
    while len(references) < queries:
        order = sorted(EDIT_TYPES, key=lambda name: counts[name])
        found = next(filter(None, (_draw_reference(rng, target, members, name) for name in order)), None)
        if found is None:
            return None
        members.add(found[0])
        references.append(found)
        counts[found[1].type_name] += 1
    near_misses = [scene for scene in one_off_variants(target) if scene not in members]
    near_misses = rng.sample(near_misses, max(1, SUBSET_NEAR_MISSES + 1 - queries))
    members.update(near_misses)
    lookalikes = _draw_lookalikes(rng, [reference for reference, _ in references], members, lookalikes_per_reference)
    return _Group(target, tuple(references), tuple(near_misses), tuple(lookalikes))


def build_benchmark(
    seed: int,
    num_queries: int = 1000,
    *,
    queries_per_target: int = 5,
    lookalikes_per_reference: int = REFERENCE_LOOKALIKES,
    num_distractors: int | None = None,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
) -> WorldBenchmark:
    """Build the benchmark: `num_queries` queries in groups of `queries_per_target` sharing a target, and a
    gallery of the groups' scenes (with `lookalikes_per_reference` look-alikes of each reference) plus
    `num_distractors` random scenes (default: `num_queries // 10`), shuffled.

    `min_objects`/`max_objects` bound the first reference drawn for each target; the target and the other
    references are one edit away (an edit may add or remove objects, up to 3).
    """
    if num_queries < 1 or queries_per_target < 1:
        raise ValueError(f"need num_queries >= 1 and queries_per_target >= 1, got {num_queries}, {queries_per_target}")
    num_distractors = num_queries // 10 if num_distractors is None else num_distractors
    if num_distractors < 0 or lookalikes_per_reference < 0:
        raise ValueError(
            f"num_distractors and lookalikes_per_reference must be >= 0, got {num_distractors}, {lookalikes_per_reference}"
        )
    rng = derived_rng("benchmark", seed)
    groups: list[_Group] = []
    type_counts: Counter[str] = Counter()
    remaining = num_queries
    for _ in range(GROUP_ATTEMPTS_PER_QUERY * num_queries):
        if not remaining:
            break
        group = _draw_group(
            rng, min(queries_per_target, remaining), type_counts, min_objects, max_objects, lookalikes_per_reference
        )
        if group is not None:
            groups.append(group)
            type_counts.update(edit.type_name for _, edit in group.references)
            remaining -= len(group.references)
    if remaining:
        raise RuntimeError(f"found only {num_queries - remaining} of {num_queries} queries")

    scenes = dict.fromkeys(scene for group in groups for scene in group.scenes())
    grouped = len(scenes)
    while len(scenes) < grouped + num_distractors:
        scenes.setdefault(sample_scene(rng, min_objects, max_objects))
    gallery = list(scenes)
    rng.shuffle(gallery)
    ids = {scene: index for index, scene in enumerate(gallery)}

    queries = []
    for group in groups:
        for reference, edit in group.references:
            others = [ids[other] for other, _ in group.references if other != reference]
            fill = SUBSET_NEAR_MISSES - len(group.near_misses)
            near = [ids[scene] for scene in group.near_misses] + rng.sample(others, fill)
            queries.append(
                WorldQuery(
                    reference=reference,
                    modification=edit.describe(reference, rng),
                    target=group.target,
                    edit=edit,
                    reference_id=ids[reference],
                    target_id=ids[group.target],
                    subset_ids=(ids[group.target], ids[reference], *near),
                )
            )
    return WorldBenchmark(seed=seed, queries=tuple(queries), gallery=tuple(gallery))


def train_test_overlap(records: Iterable[TripletRecord], benchmark: WorldBenchmark) -> dict[str, int]:
    """Count training records that touch the test side: `shared_scenes` (reference or modified caption's scene
    is a benchmark query scene), `test_partition_scenes` (either is in the held-out partition) and
    `held_out_combinations` (the change uses a held-out combination). All are 0 for a clean split."""
    test_scenes = benchmark.query_scenes()
    counts = {"records": 0, "shared_scenes": 0, "test_partition_scenes": 0, "held_out_combinations": 0}
    for record in records:
        reference, target = scene_from_id(record.source_id), parse_caption(record.modified_caption)
        counts["records"] += 1
        counts["shared_scenes"] += reference in test_scenes or target in test_scenes
        counts["test_partition_scenes"] += is_test_scene(reference) or is_test_scene(target)
        counts["held_out_combinations"] += is_test_combination(reference, target)
    return counts
