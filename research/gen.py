"""Research generator for benchmark v2 (variants selected by keyword)."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from data_utils.synthetic import (SHAPES, TEXTURES, Texture, PlacedObject, add_ignore_band,
                                  ignore_band_radius, OBJECT_RADIUS)
from data_utils.synthetic import paint_texture as _paint_texture
from data_utils.synthetic.shapes import _box, _radius
from data_utils.folds import SYNTHETIC_CLASSES

NAMED = [SHAPES[n] for n in SYNTHETIC_CLASSES]


@dataclass(frozen=True)
class Style:
    hue: float
    hue2: float
    texture: str
    sat: tuple[float, float] = (0.55, 0.9)
    val: tuple[float, float] = (0.55, 0.95)


def hsv(h, s, v):
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def named_style(i: int, mode: str) -> Style:
    # i: 0-based named class
    if mode == "golden":
        h = (i + 1) * 0.618 % 1.0
        return Style(h, h, TEXTURES[(i + 1) % 6])
    raise ValueError(mode)


def generated_shape(rng: np.random.Generator):
    """A random shape predicate: a base (disk, box, triangle, ellipse) minus holes / slots, plus bars."""
    base = rng.integers(4)
    ops = []
    if base == 0:
        ops.append(("disk", 0, 0, 0.9, 0.9))
    elif base == 1:
        ops.append(("box", 0, 0, 0.85, rng.uniform(0.5, 0.85)))
    elif base == 2:
        ops.append(("tri",))
    else:
        ops.append(("disk", 0, 0, 0.9, rng.uniform(0.5, 0.75)))
    holes = []
    for _ in range(int(rng.integers(0, 3))):
        kind = ("disk", "box")[int(rng.integers(2))]
        cu, cv = rng.uniform(-0.4, 0.4, 2)
        r = rng.uniform(0.12, 0.3)
        holes.append((kind, cu, cv, r, r * rng.uniform(0.6, 1.4)))
    if rng.random() < 0.4:  # a slot from one side
        w = rng.uniform(0.1, 0.2)
        holes.append(("box", 0.6, rng.uniform(-0.3, 0.3), 0.4, w))
    bars = []
    for _ in range(int(rng.integers(0, 2))):
        vertical = rng.random() < 0.5
        c = rng.uniform(-0.5, 0.5)
        bars.append(("box", c, 0, 0.12, 0.9) if vertical else ("box", 0, c, 0.9, 0.12))

    def prim(p, u, v):
        if p[0] == "disk":
            return ((u - p[1]) / p[3]) ** 2 + ((v - p[2]) / p[4]) ** 2 < 1
        if p[0] == "box":
            return _box(u, v, p[1], p[2], p[3], p[4])
        return (v <= 0.62) & (v >= -0.9 + np.abs(u) * (1.52 / 0.9))

    def shape(u, v):
        m = prim(ops[0], u, v)
        for b in bars:
            m = m | prim(b, u, v)
        for h in holes:
            m = m & ~prim(h, u, v)
        return m

    return shape


@dataclass
class Variant:
    name: str = "appearance"
    style: str = "golden"  # shared | golden
    n_generated: int = 0
    images_per_generated: int = 10
    train_per_class: int = 50
    test_per_class: int = 20
    bg_desat: float = 0.4
    hue_jitter: float = 0.02
    seed: int = 0
    size: int = 160

    def __post_init__(self):
        rng = np.random.default_rng([self.seed, 777])
        self.gen_shapes = [generated_shape(rng) for _ in range(self.n_generated)]
        self.gen_styles = []
        named = [named_style(i, self.style) for i in range(20)] if self.style != "shared" else []
        for _ in range(self.n_generated):
            while True:
                h = float(rng.uniform())
                t = TEXTURES[int(rng.integers(6))]
                if all(not (s.texture == t and min(abs(s.hue - h), 1 - abs(s.hue - h)) < 0.04) for s in named):
                    break
            self.gen_styles.append(Style(h, h, t))
        self.named_styles = named

    @property
    def num_classes(self):
        return 20 + self.n_generated

    def shape_fn(self, c):
        return NAMED[c - 1] if c <= 20 else self.gen_shapes[c - 21]

    def num_images(self, split):
        if split == "test":
            return 20 * self.test_per_class
        return 20 * self.train_per_class + self.n_generated * self.images_per_generated

    def primary(self, split, j):
        if split == "test" or j < 20 * self.train_per_class:
            return j % 20 + 1
        return 21 + (j - 20 * self.train_per_class) % self.n_generated

    def texture(self, rng, c, avoid=None):
        size = self.size
        if c is None or self.style == "shared":
            for _ in range(12):
                color_a = rng.uniform(0, 255, 3)
                offset = rng.normal(0, 1, 3)
                offset *= rng.uniform(50, 110) / (np.linalg.norm(offset) + 1e-6)
                color_b = np.clip(color_a + offset, 0, 255)
                if avoid is None or np.linalg.norm((color_a + color_b) / 2 - avoid) > 70:
                    break
            if c is None and self.bg_desat > 0 and self.style != "shared":
                g = lambda col: tuple(float(x) for x in (1 - self.bg_desat) * np.asarray(col) + self.bg_desat * np.mean(col))
                color_a, color_b = g(color_a), g(color_b)
            kind = TEXTURES[int(rng.integers(6))]
        else:
            s = self.named_styles[c - 1] if c <= 20 else self.gen_styles[c - 21]
            h = s.hue + rng.uniform(-self.hue_jitter, self.hue_jitter)
            sat = rng.uniform(*s.sat)
            val = rng.uniform(*s.val)
            color_a = hsv(h, sat, val)
            color_b = hsv(s.hue2 + rng.uniform(-self.hue_jitter, self.hue_jitter), sat * 0.6, val * 0.6)
            kind = s.texture
        period = float(rng.uniform(0.035, 0.08) * size)
        return Texture(kind=kind, color_a=tuple(float(x) for x in color_a), color_b=tuple(float(x) for x in color_b),
                       period=max(period, 3.0), angle=float(rng.uniform(0, np.pi)),
                       noise_seed=int(rng.integers(2 ** 31)))

    def layout(self, split, j):
        size = self.size
        rng = np.random.default_rng([self.seed, 1 if split == "train" else 2, j])
        primary = self.primary(split, j)
        bg = self.texture(rng, None)
        n_primary = 1 + int(rng.random() < 0.3)
        n_d = int(rng.integers(1, 4))
        pool = self.num_classes if split == "train" else 20
        others = np.array([c for c in range(1, pool + 1) if c != primary])
        distractors = rng.choice(others, size=n_d, replace=True)
        plan = [int(c) for c in distractors] + [primary] * n_primary
        placed = []
        avoid = (np.asarray(bg.color_a) + np.asarray(bg.color_b)) / 2
        for c in plan:
            radius = float(rng.uniform(*OBJECT_RADIUS) * size)
            center = (0.0, 0.0)
            for _ in range(20):
                center = (float(rng.uniform(0.6 * radius, size - 0.6 * radius)),
                          float(rng.uniform(0.6 * radius, size - 0.6 * radius)))
                if all(np.hypot(center[0] - o.center[0], center[1] - o.center[1]) > 0.85 * (radius + o.radius)
                       for o in placed):
                    break
            placed.append(PlacedObject(class_id=c, center=center, radius=radius, angle=float(rng.uniform(0, 2 * np.pi)),
                                       aspect=(float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.8, 1.2))),
                                       texture=self.texture(rng, c, avoid)))
        return bg, placed

    def _mask(self, obj, grid, scale):
        reach = obj.radius * max(obj.aspect) * 1.3 * scale
        cx, cy = obj.center[0] * scale, obj.center[1] * scale
        x0, x1 = max(0, int(cx - reach)), min(grid, int(np.ceil(cx + reach)) + 1)
        y0, y1 = max(0, int(cy - reach)), min(grid, int(np.ceil(cy + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5) / scale - obj.center[0]
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5) / scale - obj.center[1]
        dx, dy = xs[None, :], ys[:, None]
        c, s = np.cos(obj.angle), np.sin(obj.angle)
        u = (c * dx + s * dy) / (obj.radius * obj.aspect[0])
        v = (-s * dx + c * dy) / (obj.radius * obj.aspect[1])
        return self.shape_fn(obj.class_id)(u, v), (x0, x1, y0, y1), (u, v)

    def render(self, split, j, ss=2):
        size = self.size
        bg, objs = self.layout(split, j)
        label = np.zeros((size, size), np.uint8 if self.num_classes < 255 else np.int32)
        for o in objs:
            hit = self._mask(o, size, 1.0)
            if hit is None:
                continue
            m, (x0, x1, y0, y1), _ = hit
            label[y0:y1, x0:x1][m] = o.class_id
        grid = size * ss
        coords = np.arange(grid, dtype=np.float32) + 0.5
        canvas = np.broadcast_to(_paint_texture(bg, coords[None, :], coords[:, None], ss), (grid, grid, 3)).astype(
            np.float32, copy=True)
        for o in objs:
            hit = self._mask(o, grid, float(ss))
            if hit is None:
                continue
            m, (x0, x1, y0, y1), (u, v) = hit
            rp = o.radius * ss
            canvas[y0:y1, x0:x1][m] = _paint_texture(o.texture, u * rp, v * rp, ss)[m]
        canvas = canvas.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
        img = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        # ignore band on a uint8 view of ids (ids > 254 would collide; keep small)
        band = add_ignore_band((label % 251).astype(np.uint8), ignore_band_radius(size)) == 255
        label = label.astype(np.int32)
        label[band] = -1
        return img, label
