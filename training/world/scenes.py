"""Scenes of the synthetic world: vocabularies, the scene graph, sampling and rendering.

A scene is 3–10 flat shapes on a textured background (noise, gradient or clutter). Each object has a shape (the
object class) and three attributes (colour, size, fill). Objects are drawn in list order, so later objects occlude
earlier ones; sampling rejects any placement that would hide more than ``1 - MIN_VISIBLE_FRACTION`` of an object,
so every object in the scene graph is recognisable and every box is learnable by a detector. Scenes may come in
kinds (``sample_scene(kinds=K)``), each favouring its own shapes and colours, as a kitchen holds other things than a
street: captions of one kind then rarely fit an image of another, which is what lets image-text matching start.

Boxes are tight around the *visible* pixels of an object, in continuous pixel coordinates: pixel column ``i`` covers
``[i, i + 1)``, so a box is ``(min_col, min_row, max_col + 1, max_row + 1)`` — the convention of torchvision and of
the authors' obj36 TSVs (absolute ``x1, y1, x2, y2``).

Label vocabularies follow Visual Genome's files (``objects_vocab.txt`` / ``attributes_vocab.txt``, one label per
line; the line number is the id): objects are ``SHAPES``, attributes are ``COLOURS + SIZES + FILLS``.
"""

from __future__ import annotations

import colorsys
import functools
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lxmert.fileio import atomic_write_text

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "heart", "arrow")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "gray", "white")
SIZES = ("small", "medium", "large")
FILLS = ("solid", "striped", "dotted", "outlined")

OBJECT_LABELS = SHAPES
ATTRIBUTE_LABELS = COLOURS + SIZES + FILLS

SPATIAL_PREDICATES = ("left of", "right of", "above", "below", "near")
COMPARISON_PREDICATES = ("larger than", "smaller than", "same colour as", "same shape as")

COLOUR_RGB = {
    "red": (220, 35, 35),
    "orange": (250, 140, 15),
    "yellow": (245, 225, 40),
    "green": (40, 175, 60),
    "blue": (35, 90, 235),
    "purple": (140, 55, 205),
    "pink": (250, 135, 200),
    "brown": (130, 75, 30),
    "gray": (150, 150, 150),
    "white": (250, 250, 250),
}
# Half-extent of an object as a fraction of the image side; sizes are ~1.7x apart so that they stay distinguishable
# after the +-8% jitter (26 / 44 / 66 px wide at 256x256).
SIZE_RADIUS = {"small": 0.05, "medium": 0.085, "large": 0.13}
SIZE_JITTER = 0.08
MAX_ROTATION_DEGREES = 15.0  # more would turn a square into a diamond
MIN_VISIBLE_FRACTION = 0.6  # an object may be at most 40% hidden
MIN_OBJECTS, MAX_OBJECTS = 3, 10
MAX_SCENE_KINDS = min(len(SHAPES), len(COLOURS))  # each kind favours at least one shape and one colour
KIND_BIAS = 0.85  # chance that an object of a scene kind takes the kind's shape (and, apart, its colour)
BACKGROUND_KINDS = ("noise", "gradient", "clutter")
# Spatial relations need a clear margin (fraction of the image side) so that every stated relation is visible.
DIRECTION_MARGIN = 0.04
NEAR_GAP = 0.06


@dataclass(frozen=True)
class Background:
    """How the background is painted: ``kind`` in BACKGROUND_KINDS, two RGB colours and a seed for its texture."""

    kind: str
    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    seed: int


@dataclass
class SceneObject:
    """One shape. ``centre``/``radius``/``rotation`` place it; ``box`` is tight around its visible pixels."""

    shape: str
    colour: str
    size: str
    fill: str
    centre: tuple[float, float]
    radius: float
    rotation: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    visible_fraction: float = 1.0

    @property
    def label_id(self) -> int:
        """Index of the shape in ``objects_vocab.txt``."""
        return OBJECT_LABELS.index(self.shape)

    @property
    def attributes(self) -> tuple[str, str, str]:
        return (self.colour, self.size, self.fill)

    @property
    def attr_ids(self) -> tuple[int, int, int]:
        """Indices of (colour, size, fill) in ``attributes_vocab.txt``."""
        return tuple(ATTRIBUTE_LABELS.index(a) for a in self.attributes)

    @property
    def box_centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)


@dataclass(frozen=True)
class Relation:
    """``objects[subject] <predicate> objects[object]``, e.g. (0, "left of", 2)."""

    subject: int
    predicate: str
    object: int


@dataclass
class Scene:
    width: int
    height: int
    background: Background
    objects: list[SceneObject]
    relations: list[Relation] = field(default_factory=list)
    kind: int = 0  # which of the world's scene kinds (``sample_scene``'s ``kinds``); 0 when there is one

    def related(self, subject: int, predicate: str) -> list[int]:
        """Indices ``j`` such that ``subject <predicate> j`` holds."""
        return [r.object for r in self.relations if r.subject == subject and r.predicate == predicate]

    def holds(self, subject: int, predicate: str, obj: int) -> bool:
        return Relation(subject, predicate, obj) in self.relation_set

    @functools.cached_property
    def relation_set(self) -> frozenset[Relation]:
        """Relations as a set for fast lookup (relations are fixed once a scene is sampled)."""
        return frozenset(self.relations)


def _normalised(points: np.ndarray) -> np.ndarray:
    """Centre a polygon's bounding box on the origin and scale its larger half-extent to 1."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - (lo + hi) / 2) / ((hi - lo).max() / 2)


def _regular(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return _regular(10) * radii[:, None]


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y], axis=1)  # image y grows downwards


def _cross(arm: float = 0.33) -> np.ndarray:
    a = arm
    return np.array(
        [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
    )


# Unit outlines (image coordinates, y down), each spanning [-1, 1] on its longer axis.
SHAPE_POLYGONS = {
    name: _normalised(np.asarray(points, dtype=np.float64))
    for name, points in {
        "circle": _regular(64),
        "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
        "triangle": _regular(3),
        "diamond": [(0, -1), (0.68, 0), (0, 1), (-0.68, 0)],
        "pentagon": _regular(5),
        "hexagon": _regular(6, phase=0.0),
        "star": _star(),
        "cross": _cross(),
        "heart": _heart(),
        "arrow": [(-1, -0.28), (0.15, -0.28), (0.15, -0.7), (1, 0), (0.15, 0.7), (0.15, 0.28), (-1, 0.28)],
    }.items()
}
assert tuple(SHAPE_POLYGONS) == SHAPES


def object_polygon(obj: SceneObject) -> list[tuple[float, float]]:
    """Pixel-space outline of an object (rotation about its centre)."""
    theta = math.radians(obj.rotation)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = SHAPE_POLYGONS[obj.shape] @ rot.T * obj.radius + np.asarray(obj.centre)
    return [tuple(p) for p in points]


def _outline_width(obj: SceneObject) -> int:
    return max(3, round(obj.radius / 4))


def _ink_patch(obj: SceneObject, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """The object's painted pixels in a window around it: (mask, x0, y0) with the window's top-left corner."""
    reach = (
        obj.radius * math.sqrt(2) + _outline_width(obj) + 2
    )  # a rotated square's corner reaches r * sqrt(2)
    cx, cy = obj.centre
    x0, y0 = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    x1, y1 = min(width, math.ceil(cx + reach)), min(height, math.ceil(cy + reach))
    canvas = Image.new("L", (max(x1 - x0, 1), max(y1 - y0, 1)), 0)
    polygon = [(x - x0, y - y0) for x, y in object_polygon(obj)]
    if obj.fill == "outlined":
        ImageDraw.Draw(canvas).polygon(polygon, outline=255, width=_outline_width(obj))
    else:
        ImageDraw.Draw(canvas).polygon(polygon, fill=255)
    return np.asarray(canvas) > 0, x0, y0


def object_ink(obj: SceneObject, width: int, height: int) -> np.ndarray:
    """Boolean (H, W) mask of the pixels this object paints (an outlined shape paints only its rim)."""
    patch, x0, y0 = _ink_patch(obj, width, height)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    return mask


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _background_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    # Muted mid-dark tones: every object colour (white and yellow included) stays readable on them.
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.35), rng.uniform(0.28, 0.5))
    return (round(r * 255), round(g * 255), round(b * 255))


def kind_labels(kind: int, kinds: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The shapes and colours that scenes of ``kind`` (one of ``kinds``) favour: every ``kinds``-th one."""
    return SHAPES[kind::kinds], COLOURS[kind::kinds]


def _sample_object(
    rng: np.random.Generator, width: int, height: int, shapes: tuple[str, ...], colours: tuple[str, ...]
) -> SceneObject:
    size = SIZES[rng.integers(len(SIZES))]
    radius = SIZE_RADIUS[size] * min(width, height) * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
    margin = radius + 2
    return SceneObject(
        shape=shapes[rng.integers(len(shapes))],
        colour=colours[rng.integers(len(colours))],
        size=size,
        fill=FILLS[rng.integers(len(FILLS))],
        centre=(float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin))),
        radius=float(radius),
        rotation=float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)),
    )


def sample_scene(
    rng: np.random.Generator,
    size: int = 256,
    num_objects: int | None = None,
    max_tries_per_object: int = 40,
    kinds: int = 1,
    kind_bias: float = KIND_BIAS,
) -> Scene:
    """Draw a random scene.

    Args:
        rng: the only source of randomness, so a seeded generator gives the same scene every time.
        size: image side in pixels (square images).
        num_objects: objects wanted (default: uniform in [MIN_OBJECTS, MAX_OBJECTS]). Fewer are placed when the
            image is too crowded to add one without hiding an earlier object beyond MIN_VISIBLE_FRACTION.
        max_tries_per_object: placements tried per object before giving up on it.
        kinds: kinds of scene, as photographs come from kitchens or streets. With more than one, the scene draws a
            kind, and each object takes its shape from the kind's ``kind_labels`` with probability ``kind_bias``
            (else from all shapes), and its colour likewise. With one, nothing extra is drawn, so scenes are as
            they were before kinds existed.
        kind_bias: see ``kinds``.

    Returns:
        A Scene whose objects carry tight visible boxes and whose relations are filled in.
    """
    if size < 32:
        raise ValueError(f"scene size must be at least 32 pixels, got {size}")
    wanted = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1)) if num_objects is None else num_objects
    background = Background(
        kind=BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))],
        colour_a=_background_colour(rng),
        colour_b=_background_colour(rng),
        seed=int(rng.integers(2**31)),
    )
    if not 1 <= kinds <= MAX_SCENE_KINDS or not 0 <= kind_bias <= 1:
        raise ValueError(f"need 1 <= kinds <= {MAX_SCENE_KINDS} and 0 <= kind_bias <= 1")
    kind = int(rng.integers(kinds)) if kinds > 1 else 0
    kind_shapes, kind_colours = kind_labels(kind, kinds)
    objects: list[SceneObject] = []
    full_area: list[int] = []
    visible: list[np.ndarray] = []
    for _ in range(wanted * max_tries_per_object):
        if len(objects) == wanted:
            break
        shapes = kind_shapes if kinds > 1 and rng.random() < kind_bias else SHAPES
        colours = kind_colours if kinds > 1 and rng.random() < kind_bias else COLOURS
        candidate = _sample_object(rng, size, size, shapes, colours)
        ink = object_ink(candidate, size, size)
        still_visible = [v & ~ink for v in visible]
        if all(v.sum() >= MIN_VISIBLE_FRACTION * a for v, a in zip(still_visible, full_area, strict=True)):
            objects.append(candidate)
            full_area.append(int(ink.sum()))
            visible = [*still_visible, ink]
    for obj, mask, area in zip(objects, visible, full_area, strict=True):
        obj.box = _tight_box(mask)
        obj.visible_fraction = float(mask.sum() / area)
    return Scene(size, size, background, objects, compute_relations(objects, size), kind)


def _gap(a: SceneObject, b: SceneObject) -> float:
    """Distance between two boxes (0 when they overlap)."""
    dx = max(b.box[0] - a.box[2], a.box[0] - b.box[2], 0.0)
    dy = max(b.box[1] - a.box[3], a.box[1] - b.box[3], 0.0)
    return math.hypot(dx, dy)


def compute_relations(objects: list[SceneObject], size: int) -> list[Relation]:
    """Spatial relations (with a margin, from visible-box centres) and comparisons for every ordered pair."""
    margin = DIRECTION_MARGIN * size
    relations = []
    for i, j in itertools.permutations(range(len(objects)), 2):
        a, b = objects[i], objects[j]
        (ax, ay), (bx, by) = a.box_centre, b.box_centre
        predicates = []
        if ax < bx - margin:
            predicates.append("left of")
        if ax > bx + margin:
            predicates.append("right of")
        if ay < by - margin:
            predicates.append("above")
        if ay > by + margin:
            predicates.append("below")
        if _gap(a, b) < NEAR_GAP * size:
            predicates.append("near")
        size_order = SIZES.index(a.size) - SIZES.index(b.size)
        if size_order > 0:
            predicates.append("larger than")
        if size_order < 0:
            predicates.append("smaller than")
        if a.colour == b.colour:
            predicates.append("same colour as")
        if a.shape == b.shape:
            predicates.append("same shape as")
        relations.extend(Relation(i, p, j) for p in predicates)
    return relations


def _blend(a: tuple[int, int, int], b: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 mix of colours a and b by ``t`` (H, W) uint8 (0 = a, 255 = b), one lookup table per channel."""
    levels = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    image = np.empty((*t.shape, 3), dtype=np.uint8)
    for c, (lo, hi) in enumerate(zip(a, b, strict=True)):
        image[..., c] = np.round(lo + (hi - lo) * levels).astype(np.uint8)[t]
    return image


def _render_background(background: Background, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(background.seed)
    a, b = background.colour_a, background.colour_b
    if background.kind == "noise":
        coarse = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8))
        image = _blend(a, b, np.asarray(coarse.resize((width, height), Image.BICUBIC)))
        # Grey pixel grain, the same on the three channels.
        grain = np.repeat(rng.integers(-16, 17, (height, width, 1), dtype=np.int16), 3, axis=2)
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    else:
        angle = rng.uniform(0, 2 * math.pi)
        xs = np.arange(width, dtype=np.float32)[None, :] * math.cos(angle)
        ys = np.arange(height, dtype=np.float32)[:, None] * math.sin(angle)
        proj = xs + ys
        t = (proj - proj.min()) * (255 / max(float(np.ptp(proj)), 1.0))
        image = _blend(a, b, np.round(t).astype(np.uint8))
    if background.kind == "clutter":
        # Thin strokes and specks near the background tone: texture to ignore, never object-like.
        canvas = Image.fromarray(image)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(25, 45))):
            tone = tuple(int(c) for c in np.clip((np.add(a, b)) / 2 + rng.normal(0, 28, 3), 0, 255))
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            if rng.random() < 0.6:
                dx, dy = rng.normal(0, width / 8, 2)
                draw.line([(x, y), (x + dx, y + dy)], fill=tone, width=1)
            else:
                r = rng.uniform(1, 3)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)
        image = np.asarray(canvas.filter(ImageFilter.SMOOTH))
    return image


def _shade(rgb: tuple[int, int, int], factor: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) * factor, 0, 255).astype(np.uint8)


def _paint(image: np.ndarray, obj: SceneObject) -> None:
    """Paint one object onto ``image`` (H, W, 3) in place, working in a window around the object."""
    height, width = image.shape[:2]
    ink, x0, y0 = _ink_patch(obj, width, height)
    window = image[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]]
    colour = np.asarray(COLOUR_RGB[obj.colour], dtype=np.uint8)
    dark = _shade(COLOUR_RGB[obj.colour], 0.55)
    if obj.fill in ("solid", "outlined"):
        window[ink] = colour
        return
    ys, xs = np.nonzero(ink)
    xs, ys = xs + x0, ys + y0  # patterns are laid in image coordinates
    period = max(6, round(obj.radius / 3))
    if obj.fill == "striped":
        pattern = ((xs + ys) // (period // 2)) % 2 == 0
        window[ink] = np.where(pattern[:, None], colour, dark)
    else:  # dotted: dark dots on the colour
        u, v = xs % period - period / 2, ys % period - period / 2
        pattern = u * u + v * v < (period / 3.2) ** 2
        window[ink] = np.where(pattern[:, None], dark, colour)
    # A dark rim keeps patterned shapes readable against busy backgrounds.
    rim = Image.new("L", (ink.shape[1], ink.shape[0]), 0)
    ImageDraw.Draw(rim).polygon([(x - x0, y - y0) for x, y in object_polygon(obj)], outline=255, width=2)
    window[np.asarray(rim) > 0] = dark


def render_scene(scene: Scene) -> Image.Image:
    """Render a scene to an RGB PIL image; deterministic given the scene."""
    image = _render_background(scene.background, scene.width, scene.height).copy()
    for obj in scene.objects:
        _paint(image, obj)
    return Image.fromarray(image)


def write_vocab_files(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``objects_vocab.txt`` and ``attributes_vocab.txt`` (Visual Genome style) atomically.

    Returns:
        The paths of the two files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, labels in (("objects_vocab.txt", OBJECT_LABELS), ("attributes_vocab.txt", ATTRIBUTE_LABELS)):
        path = out / name
        atomic_write_text(path, "\n".join(labels) + "\n")
        paths.append(path)
    return paths[0], paths[1]
