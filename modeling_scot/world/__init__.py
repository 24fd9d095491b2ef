"""The built-in synthetic world: scenes of coloured shapes, their renders, captions, edits and a CIR benchmark.

Everything runs offline and is seeded: a small CLIP is trained on the world's images and captions, the
Combiner on rule-written triplets, and both are evaluated on a compositional benchmark of held-out changes.
"""

from pathlib import Path

from .benchmark import WorldBenchmark, WorldQuery, build_benchmark, train_test_overlap
from .captions import caption, parse_caption, partial_caption, read_attributes, states_truly
from .edits import (
    EDIT_TYPES,
    AddObject,
    ChangeAttribute,
    ComposeEdits,
    Edit,
    MoveObject,
    RemoveObject,
    SwapObjects,
    sample_edit,
)
from .negatives import hard_negative_captions
from .refer import refer
from .render import render_scene
from .scene import (
    CELLS,
    COLOURS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    STYLES,
    Scene,
    WorldObject,
    binding_variants,
    derived_rng,
    one_off_variants,
    sample_scene,
    scene_from_id,
    scene_id,
)
from .split import HELD_OUT_OBJECTS, HELD_OUT_VALUES, is_test_combination, is_test_scene
from .vocabulary import world_vocabulary


def clip_path() -> Path:
    """The folder where the CLIP trained on this world is shipped."""
    return Path(__file__).resolve().parents[1] / "assets" / "world-clip"


__all__ = [
    "CELLS",
    "COLOURS",
    "EDIT_TYPES",
    "HELD_OUT_OBJECTS",
    "HELD_OUT_VALUES",
    "MAX_OBJECTS",
    "SHAPES",
    "SIZES",
    "STYLES",
    "AddObject",
    "ChangeAttribute",
    "ComposeEdits",
    "Edit",
    "MoveObject",
    "RemoveObject",
    "Scene",
    "SwapObjects",
    "WorldBenchmark",
    "WorldObject",
    "WorldQuery",
    "binding_variants",
    "build_benchmark",
    "caption",
    "clip_path",
    "derived_rng",
    "hard_negative_captions",
    "is_test_combination",
    "is_test_scene",
    "one_off_variants",
    "parse_caption",
    "partial_caption",
    "read_attributes",
    "refer",
    "render_scene",
    "sample_edit",
    "sample_scene",
    "scene_from_id",
    "scene_id",
    "states_truly",
    "train_test_overlap",
    "world_vocabulary",
]
