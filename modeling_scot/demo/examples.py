"""Clickable examples for the demo: queries of the built-in world's benchmark, one per edit type."""

from __future__ import annotations

from pathlib import Path

from ..world import EDIT_TYPES, build_benchmark, render_scene


def world_examples(source: dict, folder: Path) -> list[tuple[str, str]]:
    """(reference image file, modification text) of the first benchmark query of each edit type when `source`
    (a gallery index's source) is the world's benchmark gallery, else none; references are rendered under `folder`."""
    if source.get("kind") != "world":
        return []
    firsts = {}
    for query in build_benchmark(source["seed"], source["num_queries"]).queries:
        firsts.setdefault(query.edit_type, query)
    folder = folder / f"world-{source['seed']}-{source['num_queries']}-{source['image_size']}"
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for edit_type in (name for name in EDIT_TYPES if name in firsts):
        path = folder / f"{edit_type}.png"
        render_scene(firsts[edit_type].reference, source["image_size"]).save(path)
        examples.append((str(path), firsts[edit_type].modification))
    return examples


__all__ = ["world_examples"]
