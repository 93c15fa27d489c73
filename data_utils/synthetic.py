"""The embedded synthetic few-shot benchmark: 20 shape classes in 4 folds of 5, no download, fully deterministic.

Why it looks the way it does
----------------------------
DPCN's claim is that plain prototype matching (one mean feature per support mask) misses objects with holes and
slots, and that dynamic convolution over local structure recovers them. So the classes differ by *shape and
structure* (solid disk vs ring vs ring with a slot, solid square vs frame vs frame with a gap vs window grid, cross vs
cross with a hole...), while colour and texture carry no class information: every object and the background draw
their colours and texture (plain, stripes, dots, checker, noise, gradient) from one pool shared by all classes.
Each image holds one or two objects of its *primary* class plus 1-3 distractors of other classes, at varied scale,
position, rotation and aspect, and an ignore band (255) a few pixels wide along every label boundary, as in VOC.

Determinism: image ``j`` of a split is a pure function of ``(seed, split, j, image_size)``. Its layout comes from
``np.random.default_rng([seed, split_code, j])`` (PCG64), never from a global RNG, so any process on any machine
renders identical pixels in any access order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from .folds import SYNTHETIC_CLASSES
from .sources import MIN_CLASS_PIXELS, SegmentationSource, Split, check_split
from .validation import IGNORE_INDEX

SPLIT_CODES: dict[str, int] = {"train": 1, "test": 2}
REFERENCE_SIZE = 473  # the paper's crop size: the 2,048-pixel rule is defined at this scale
# Object radius as a fraction of the image side (a shape spans about 0.9 radius): large enough that an object covers
# tens of cells of a stride-8 feature grid, so its holes and slots can be resolved. Targets and distractors share this
# range: were distractors smaller, "segment the biggest object" would find the target without looking at the support
# (with distractors at 10-18 % it scored 0.99 IoU on primary-class episodes; at one shared scale, 0.34 on all pairs).
OBJECT_RADIUS = (0.22, 0.36)
DEFAULT_IMAGES_PER_CLASS: dict[str, int] = {"train": 50, "test": 20}

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------------------------------
# Shapes: boolean predicates on object coordinates (u to the right, v downwards, the object fills about [-0.9, 0.9]²).
# --------------------------------------------------------------------------------------------------------------------
def _box(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    return (np.abs(u - cu) <= hu) & (np.abs(v - cv) <= hv)


def _radius(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v <= 0.62) & (v >= -0.9 + np.abs(u) * (1.52 / 0.9))


def _cross(u: np.ndarray, v: np.ndarray, half_width: float) -> np.ndarray:
    return _box(u, v, 0, 0, half_width, 0.9) | _box(u, v, 0, 0, 0.9, half_width)


def _right_slot(u: np.ndarray, v: np.ndarray, half_width: float = 0.17) -> np.ndarray:
    return (u > 0) & (np.abs(v) < half_width)


def _disk(u, v):
    return _radius(u, v) < 0.9


def _ring(u, v):
    r = _radius(u, v)
    return (r < 0.9) & (r > 0.5)


def _ring_slot(u, v):
    return _ring(u, v) & ~_right_slot(u, v)


def _c_shape(u, v):
    r = _radius(u, v)
    opening = (u > 0) & (np.abs(np.arctan2(v, u)) < np.deg2rad(50))
    return (r < 0.9) & (r > 0.45) & ~opening


def _solid_square(u, v):
    return _box(u, v, 0, 0, 0.85, 0.85)


def _frame(u, v):
    return _solid_square(u, v) & ~_box(u, v, 0, 0, 0.5, 0.5)


def _frame_gap(u, v):
    return _frame(u, v) & ~_right_slot(u, v)


def _grid(u, v):
    holes = np.zeros_like(u, dtype=bool)
    for cu in (-0.4, 0.4):
        for cv in (-0.4, 0.4):
            holes |= _box(u, v, cu, cv, 0.24, 0.24)
    return _solid_square(u, v) & ~holes


def _u_shape(u, v):
    return _solid_square(u, v) & ~_box(u, v, 0, -0.25, 0.45, 0.7)


def _cross_plain(u, v):
    return _cross(u, v, 0.34)


def _cross_hole(u, v):
    return _cross(u, v, 0.34) & ~_box(u, v, 0, 0, 0.17, 0.17)


def _t_shape(u, v):
    return _box(u, v, 0, -0.68, 0.9, 0.22) | _box(u, v, 0, 0.12, 0.22, 0.78)


def _l_shape(u, v):
    return _box(u, v, -0.6, 0, 0.25, 0.9) | _box(u, v, 0.02, 0.65, 0.87, 0.25)


def _e_shape(u, v):
    return (
        _box(u, v, -0.66, 0, 0.22, 0.9)
        | _box(u, v, 0, -0.72, 0.88, 0.18)
        | _box(u, v, 0, 0, 0.88, 0.16)
        | _box(u, v, 0, 0.72, 0.88, 0.18)
    )


def _h_shape(u, v):
    return _box(u, v, -0.62, 0, 0.24, 0.9) | _box(u, v, 0.62, 0, 0.24, 0.9) | _box(u, v, 0, 0, 0.85, 0.2)


def _two_bars(u, v):
    return _box(u, v, -0.5, 0, 0.24, 0.9) | _box(u, v, 0.5, 0, 0.24, 0.9)


def _comb(u, v):
    teeth = np.zeros_like(u, dtype=bool)
    for cu in (-0.75, -0.25, 0.25, 0.75):
        teeth |= _box(u, v, cu, 0.2, 0.13, 0.7)
    return _box(u, v, 0, -0.7, 0.9, 0.2) | teeth


def _triangle_hole(u, v):
    return _triangle(u, v) & ~(_radius(u, v - 0.16) < 0.27)


def _wheel(u, v):
    r = _radius(u, v)
    spokes = (r < 0.9) & ((np.abs(u) < 0.11) | (np.abs(v) < 0.11))
    return ((r < 0.9) & (r > 0.62)) | spokes | (r < 0.2)


SHAPES: dict[str, ShapeFn] = {
    "disk": _disk,
    "square frame": _frame,
    "cross with hole": _cross_hole,
    "E shape": _e_shape,
    "two bars": _two_bars,
    "ring": _ring,
    "solid square": _solid_square,
    "T shape": _t_shape,
    "comb": _comb,
    "triangle with hole": _triangle_hole,
    "ring with slot": _ring_slot,
    "frame with gap": _frame_gap,
    "cross": _cross_plain,
    "U shape": _u_shape,
    "grid": _grid,
    "C shape": _c_shape,
    "L shape": _l_shape,
    "H shape": _h_shape,
    "triangle": _triangle,
    "wheel": _wheel,
}
assert tuple(SHAPES) == SYNTHETIC_CLASSES

TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checker", "noise", "gradient")


# --------------------------------------------------------------------------------------------------------------------
# Layout: everything random about one image, drawn up front so that rendering itself is a pure function.
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Texture:
    kind: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    period: float  # in output pixels
    angle: float
    noise_seed: int


@dataclass(frozen=True)
class PlacedObject:
    class_id: int
    center: tuple[float, float]  # (x, y) in output pixels
    radius: float  # output pixels; the shape spans about 0.9 * radius
    angle: float
    aspect: tuple[float, float]
    texture: Texture


@dataclass(frozen=True)
class Layout:
    primary_class: int
    background: Texture
    objects: tuple[PlacedObject, ...]  # painted in this order: later objects cover earlier ones


def _random_texture(rng: np.random.Generator, size: int, avoid: np.ndarray | None = None) -> Texture:
    """A texture from the shared pool; ``avoid`` (a mean colour) keeps objects visible against the background."""
    for _ in range(12):
        color_a = rng.uniform(0, 255, 3)
        offset = rng.normal(0, 1, 3)
        offset *= rng.uniform(50, 110) / (np.linalg.norm(offset) + 1e-6)
        color_b = np.clip(color_a + offset, 0, 255)
        if avoid is None or np.linalg.norm((color_a + color_b) / 2 - avoid) > 70:
            break
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    period = float(rng.uniform(0.035, 0.08) * size)
    return Texture(
        kind=kind,
        color_a=tuple(float(c) for c in color_a),
        color_b=tuple(float(c) for c in color_b),
        period=max(period, 3.0),
        angle=float(rng.uniform(0, np.pi)),
        noise_seed=int(rng.integers(2**31)),
    )


def _texture_mean(t: Texture) -> np.ndarray:
    return (np.asarray(t.color_a) + np.asarray(t.color_b)) / 2


def make_layout(seed: int, split: str, index: int, size: int, num_classes: int = 20) -> Layout:
    """Draw the layout of image ``index`` of ``split`` from ``default_rng([seed, split_code, index])`` alone."""
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])
    primary = index % num_classes + 1
    background = _random_texture(rng, size)
    n_primary = 1 + int(rng.random() < 0.3)
    n_distractors = int(rng.integers(1, 4))
    others = np.array([c for c in range(1, num_classes + 1) if c != primary])
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
        placed.append(PlacedObject(
            class_id=class_id,
            center=center,
            radius=radius,
            angle=float(rng.uniform(0, 2 * np.pi)),
            aspect=(float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.8, 1.2))),
            texture=_random_texture(rng, size, avoid=_texture_mean(background)),
        ))
    return Layout(primary_class=primary, background=background, objects=tuple(placed))


# --------------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------------
def _paint_texture(t: Texture, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """Colour ``HxWx3`` float32 of texture ``t`` at coordinates (x, y) given in supersampled pixels."""
    p = t.period * scale
    c, s = np.cos(t.angle), np.sin(t.angle)
    a = x * c + y * s
    b = -x * s + y * c
    if t.kind == "plain":
        w = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.float32)
    elif t.kind == "stripes":
        w = (np.floor(a / p) % 2).astype(np.float32)
    elif t.kind == "dots":
        da = (a / p) % 1.0 - 0.5
        db = (b / p) % 1.0 - 0.5
        w = (da * da + db * db < 0.09).astype(np.float32)
    elif t.kind == "checker":
        w = ((np.floor(a / p) + np.floor(b / p)) % 2).astype(np.float32)
    elif t.kind == "noise":
        cells = np.random.default_rng(t.noise_seed).random((64, 64)).astype(np.float32)
        ia = np.floor(a / (0.5 * p)).astype(np.int64) % 64
        ib = np.floor(b / (0.5 * p)).astype(np.int64) % 64
        w = cells[ib, ia]
    elif t.kind == "gradient":
        w = ((a / (6 * p)) % 2.0).astype(np.float32)
        w = np.minimum(w, 2.0 - w)
    else:  # pragma: no cover - TEXTURES is closed
        raise ValueError(t.kind)
    ca = np.asarray(t.color_a, np.float32)
    cb = np.asarray(t.color_b, np.float32)
    return ca + w[..., None] * (cb - ca)


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
    mask = SHAPES[SYNTHETIC_CLASSES[obj.class_id - 1]](u, v)
    return mask, (x0, x1, y0, y1), (u, v)


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
    canvas = _paint_texture(layout.background, coords[None, :], coords[:, None], supersample)
    canvas = np.broadcast_to(canvas, (grid, grid, 3)).astype(np.float32, copy=True)
    for obj in layout.objects:
        hit = _object_mask(obj, grid, float(supersample))
        if hit is None:
            continue
        mask, (x0, x1, y0, y1), (u, v) = hit
        # textures follow the object's own frame, so they rotate and scale with it
        radius_px = obj.radius * supersample
        colour = _paint_texture(obj.texture, u * radius_px, v * radius_px, supersample)
        canvas[y0:y1, x0:x1][mask] = colour[mask]
    if supersample > 1:
        canvas = canvas.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


class SyntheticSource(SegmentationSource):
    """The synthetic benchmark as a source: ids are ``"train-00012"`` / ``"test-00007"``.

    ``images_per_class`` images per split have each class as their primary class (image ``j`` has primary class
    ``j % 20 + 1``); distractors add more qualifying images per class. The 2,048-pixel rule is scaled with the image
    area: ``min_pixels = round(2048 * (image_size / 473)²)`` (234 px at 160, 37 px at 64).
    """

    name = "synthetic"
    classes = SYNTHETIC_CLASSES

    def __init__(
        self,
        image_size: int = 160,
        seed: int = 0,
        images_per_class: int | dict[str, int] | None = None,
        supersample: int = 2,
        cache_size: int = 128,
    ) -> None:
        super().__init__()
        if int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        self.image_size = int(image_size)
        self.seed = int(seed)
        if images_per_class is None:
            images_per_class = dict(DEFAULT_IMAGES_PER_CLASS)
        elif isinstance(images_per_class, int):
            images_per_class = {"train": images_per_class, "test": images_per_class}
        self.images_per_class = {s: int(images_per_class[s]) for s in ("train", "test")}
        if min(self.images_per_class.values()) < 1:
            raise ValueError(f"images_per_class must be >= 1, got {self.images_per_class}")
        self.supersample = int(supersample)
        self.min_pixels = max(1, int(round(MIN_CLASS_PIXELS * (self.image_size / REFERENCE_SIZE) ** 2)))
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = int(cache_size)

    def num_images(self, split: Split) -> int:
        return self.images_per_class[check_split(split)] * self.num_classes

    def image_ids(self, split: Split) -> list[str]:
        return [f"{split}-{j:05d}" for j in range(self.num_images(split))]

    def _parse(self, image_id: str) -> tuple[str, int]:
        split, _, number = str(image_id).partition("-")
        if split not in SPLIT_CODES or not number.isdigit() or int(number) >= self.num_images(split):
            raise ValueError(
                f"unknown synthetic image id {image_id!r}; ids look like 'train-00012' with the number below "
                f"{self.num_images('train')} (train) or {self.num_images('test')} (test)"
            )
        return split, int(number)

    def layout(self, image_id: str) -> Layout:
        split, index = self._parse(image_id)
        return make_layout(self.seed, split, index, self.image_size, self.num_classes)

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            image, label = self._cache[image_id]
        else:
            layout = self.layout(image_id)
            image = render_image(layout, self.image_size, self.supersample)
            label = render_label(layout, self.image_size)
            if self._cache_size > 0:
                self._cache[image_id] = (image, label)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return image.copy(), label.copy()

    def load_label(self, image_id: str) -> np.ndarray:
        if image_id in self._cache:
            return self._cache[image_id][1].copy()
        return render_label(self.layout(image_id), self.image_size)

    def __repr__(self) -> str:
        return (f"SyntheticSource(image_size={self.image_size}, seed={self.seed}, "
                f"images_per_class={self.images_per_class})")
