"""Everything random about one image, drawn up front (:func:`make_layout`), then rendered as a pure function of it.

Image ``j`` of a split depends on ``(benchmark, seed, split, j, image_size)`` alone: its layout comes from
``np.random.default_rng([seed, split_code, j])``. :func:`render_image` paints it supersampled and box-filtered;
:func:`render_label` samples the same shapes at pixel centres and adds the 255 band along every label boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..folds import SYNTHETIC_CLASSES
from ..validation import IGNORE_INDEX
from .benchmarks import DEFAULT_BENCHMARK, SyntheticBenchmark, get_benchmark
from .shapes import SHAPES, ShapeFn, outline_of
from .textures import Texture, paint_texture, random_texture, texture_mean

SPLIT_CODES: dict[str, int] = {"train": 1, "test": 2}
"""Split -> the second number of every image's seed sequence ``[seed, split_code, index]``."""
# Object radius as a fraction of the image side (a shape spans about 0.9 radius): large enough that an object covers
# tens of cells of a stride-8 feature grid, so its holes and slots can be resolved. Targets and distractors share this
# range: were distractors smaller, "segment the biggest object" would find the target without looking at the support
# (with distractors at 10-18 % it scored 0.99 IoU on primary-class episodes; at one shared scale, 0.34 on all pairs).
OBJECT_RADIUS = (0.22, 0.36)


@dataclass(frozen=True)
class PlacedObject:
    class_id: int
    center: tuple[float, float]  # (x, y) in output pixels
    radius: float  # output pixels; the shape spans about 0.9 * radius
    angle: float
    aspect: tuple[float, float]
    texture: Texture
    shape: ShapeFn | None = None  # None: the named class's silhouette


@dataclass(frozen=True)
class Layout:
    primary_class: int
    background: Texture
    objects: tuple[PlacedObject, ...]  # painted in this order: later objects cover earlier ones


def make_layout(seed: int, split: str, index: int, size: int, num_classes: int = 20,
                benchmark: str | SyntheticBenchmark = DEFAULT_BENCHMARK, images_per_class: int | None = None) -> Layout:
    """Draw the layout of image ``index`` of ``split`` from ``default_rng([seed, split_code, index])`` alone.

    ``benchmark`` decides the textures (shared pool or the class's own) and, on the training split, whether images
    ``index >= 20 * images_per_class`` belong to generated classes (whose objects may also be distractors there).
    """
    bench = get_benchmark(benchmark)
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])
    named_images = num_classes * (images_per_class or 0)
    if split == "train" and bench.generated_classes and index >= named_images:
        primary = num_classes + 1 + (index - named_images) % bench.generated_classes
    else:
        primary = index % num_classes + 1
    pool = num_classes + (bench.generated_classes if split == "train" else 0)
    background = random_texture(rng, size)
    if bench.background_desaturation:
        background = bench.desaturate(background)
    n_primary = 1 + int(rng.random() < 0.3)
    n_distractors = int(rng.integers(1, 4))
    others = np.array([c for c in range(1, pool + 1) if c != primary])
    distractors = rng.choice(others, size=n_distractors, replace=True)
    # distractors first, primary objects on top, so the target class is rarely hidden entirely
    plan = [int(c) for c in distractors] + [primary] * n_primary
    placed: list[PlacedObject] = []
    for class_id in plan:
        radius = float(rng.uniform(*OBJECT_RADIUS) * size)
        center = (0.0, 0.0)
        for _ in range(20):  # keep objects apart when there is room; overlap is allowed after that
            center = (float(rng.uniform(0.6 * radius, size - 0.6 * radius)),
                      float(rng.uniform(0.6 * radius, size - 0.6 * radius)))
            if all(np.hypot(center[0] - o.center[0], center[1] - o.center[1]) > 0.85 * (radius + o.radius)
                   for o in placed):
                break
        angle = float(rng.uniform(0, 2 * np.pi))
        aspect = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.8, 1.2)))
        if bench.class_appearance:
            texture = bench.class_texture(rng, class_id, size)
        else:
            texture = random_texture(rng, size, avoid=texture_mean(background))
        placed.append(PlacedObject(class_id=class_id, center=center, radius=radius, angle=angle, aspect=aspect,
                                   texture=texture, shape=bench.shape(class_id) if class_id > num_classes else None))
    return Layout(primary_class=primary, background=background, objects=tuple(placed))


def _object_window(obj: PlacedObject, grid: int, scale: float) -> tuple[int, int, int, int]:
    reach = obj.radius * max(obj.aspect) * 1.3 * scale
    cx, cy = obj.center[0] * scale, obj.center[1] * scale
    x0, x1 = max(0, int(cx - reach)), min(grid, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(grid, int(np.ceil(cy + reach)) + 1)
    return x0, x1, y0, y1


def _object_mask(obj: PlacedObject, grid: int, scale: float):
    """The object's pixels on a ``grid x grid`` raster (``scale`` raster pixels per output pixel), plus its window."""
    x0, x1, y0, y1 = _object_window(obj, grid, scale)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5) / scale - obj.center[0]
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5) / scale - obj.center[1]
    dx, dy = xs[None, :], ys[:, None]
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    u = (c * dx + s * dy) / (obj.radius * obj.aspect[0])
    v = (-s * dx + c * dy) / (obj.radius * obj.aspect[1])
    return _shape_of(obj)(u, v), (x0, x1, y0, y1), (u, v)


def _shape_of(obj: PlacedObject) -> ShapeFn:
    return obj.shape if obj.shape is not None else SHAPES[SYNTHETIC_CLASSES[obj.class_id - 1]]


def ignore_band_radius(size: int) -> int:
    """Half-width in pixels of the 255 band at label boundaries: about 1 px per 160 px of image (VOC: ~5 px at 500)."""
    return max(1, int(round(size / 160)))


def add_ignore_band(label: np.ndarray, radius: int) -> np.ndarray:
    """Set to 255 every pixel whose (2r+1)² neighbourhood holds more than one label value."""
    img = Image.fromarray(label)
    k = 2 * radius + 1
    hi = np.asarray(img.filter(ImageFilter.MaxFilter(k)))
    lo = np.asarray(img.filter(ImageFilter.MinFilter(k)))
    out = label.copy()
    out[hi != lo] = IGNORE_INDEX
    return out


def render_label(layout: Layout, size: int) -> np.ndarray:
    """The ``uint8 size x size`` label of ``layout``: objects sampled at pixel centres, then the ignore band."""
    label = np.zeros((size, size), np.uint8)
    for obj in layout.objects:
        hit = _object_mask(obj, size, 1.0)
        if hit is None:
            continue
        mask, (x0, x1, y0, y1), _ = hit
        label[y0:y1, x0:x1][mask] = obj.class_id
    return add_ignore_band(label, ignore_band_radius(size))


def render_image(layout: Layout, size: int, supersample: int = 2) -> np.ndarray:
    """The ``uint8 size x size x 3`` RGB image of ``layout``, drawn at ``supersample``× and box-filtered down."""
    grid = size * supersample
    coords = np.arange(grid, dtype=np.float32) + 0.5
    canvas = paint_texture(layout.background, coords[None, :], coords[:, None], supersample)
    canvas = np.broadcast_to(canvas, (grid, grid, 3)).astype(np.float32, copy=True)
    for obj in layout.objects:
        hit = _object_mask(obj, grid, float(supersample))
        if hit is None:
            continue
        mask, (x0, x1, y0, y1), (u, v) = hit
        # textures follow the object's own frame, so they rotate and scale with it
        radius_px = obj.radius * supersample
        colour = paint_texture(obj.texture, u * radius_px, v * radius_px, supersample)
        canvas[y0:y1, x0:x1][mask] = colour[mask]
    if supersample > 1:
        canvas = canvas.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def render_holes(layout: Layout, size: int, class_id: int) -> np.ndarray:
    """Boolean ``size x size``: the *hole pixels* of ``class_id``'s objects, inside a filled outline but not in the shape.

    Sampled at pixel centres like the label; pixels that another object of the class covers are not holes. Empty for
    classes without holes or slots (``shapes.OUTLINES``).
    """
    holes = np.zeros((size, size), bool)
    covered = np.zeros((size, size), bool)
    for obj in layout.objects:
        if obj.class_id != class_id:
            continue
        outline = outline_of(_shape_of(obj))
        hit = _object_mask(obj, size, 1.0)
        if hit is None:
            continue
        mask, (x0, x1, y0, y1), (u, v) = hit
        covered[y0:y1, x0:x1] |= mask
        if outline is not None:
            holes[y0:y1, x0:x1] |= outline(u, v) & ~mask
    return holes & ~covered
