"""Deterministic rendering of scenes: shapes drawn at 4x on a mid-grey canvas, then box-downsampled."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from .scene import GRID_SIZE, Scene, WorldObject

BACKGROUND: tuple[int, int, int] = (128, 128, 128)
RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 175, 60),
    "blue": (40, 80, 235),
    "yellow": (245, 220, 40),
    "purple": (150, 55, 200),
    "orange": (245, 135, 25),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
RADIUS: dict[str, float] = {"small": 0.23, "medium": 0.33, "large": 0.46}
"""Half the extent of an object, as a fraction of the cell side."""
OUTLINE_WIDTH = 0.08
"""Stroke width of outlined objects, as a fraction of the cell side."""
SUPERSAMPLE = 4
MIN_IMAGE_SIZE = 16


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    """A star with its top point up; `inner` is the radius of its inner corners."""
    radii = [1.0 if i % 2 == 0 else inner for i in range(2 * points)]
    angles = [math.pi * i / points for i in range(2 * points)]
    return [(r * math.sin(a), -r * math.cos(a)) for r, a in zip(radii, angles)]


_ARM = 0.34
POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)],
    "triangle": [(0.0, -0.95), (0.98, 0.82), (-0.98, 0.82)],
    "star": _star(),
    "cross": [
        (-_ARM, -1.0), (_ARM, -1.0), (_ARM, -_ARM), (1.0, -_ARM), (1.0, _ARM), (_ARM, _ARM),
        (_ARM, 1.0), (-_ARM, 1.0), (-_ARM, _ARM), (-1.0, _ARM), (-1.0, -_ARM), (-_ARM, -_ARM),
    ],
    "diamond": [(0.0, -1.0), (0.78, 0.0), (0.0, 1.0), (-0.78, 0.0)],
}
"""Unit outlines (radius 1, y down) of every shape but the circle."""


def _draw(draw: ImageDraw.ImageDraw, obj: WorldObject, cell_side: float) -> None:
    centre_x, centre_y = (obj.column + 0.5) * cell_side, (obj.row + 0.5) * cell_side
    radius = RADIUS[obj.size] * cell_side
    colour = RGB[obj.colour]
    paint = {"fill": colour} if obj.style == "solid" else {"outline": colour, "width": round(OUTLINE_WIDTH * cell_side)}
    if obj.shape == "circle":
        draw.ellipse((centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius), **paint)
    else:
        draw.polygon([(centre_x + x * radius, centre_y + y * radius) for x, y in POLYGONS[obj.shape]], **paint)


def render_scene(scene: Scene, image_size: int = 64) -> Image.Image:
    """Render `scene` as an `image_size` x `image_size` RGB image (the same pixels on every call)."""
    if type(image_size) is not int or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    canvas = Image.new("RGB", (image_size * SUPERSAMPLE,) * 2, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw(draw, obj, canvas.width / GRID_SIZE)
    return canvas.reduce(SUPERSAMPLE)
