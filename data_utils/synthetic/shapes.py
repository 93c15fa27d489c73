"""Class silhouettes: boolean predicates on object coordinates (u to the right, v downwards; an object fills about
[-0.9, 0.9]²).

* ``SHAPES``: the 20 named classes, which differ by structure (holes, slots, thin parts, concavities).
* ``OUTLINES``: for each named class with holes or slots, the filled outline they are cut from; a target's *hole
  pixels* are inside its outline but not in its shape (``dpcn_lite.metrics`` scores how many a model fills in).
* :class:`GeneratedShape`: procedural silhouettes (a base, bars added, holes and slots cut) for the extra training
  classes of the ``categories`` benchmark, drawn so that none repeats a named shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..folds import SYNTHETIC_CLASSES

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A silhouette: (u, v) coordinate arrays -> boolean mask of the same shape."""


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


# The filled outline each holed or slotted class is cut from (classes without one have no hole pixels).
OUTLINES: dict[str, ShapeFn] = {
    "square frame": _solid_square,
    "cross with hole": _cross_plain,
    "E shape": lambda u, v: _box(u, v, 0, 0, 0.88, 0.9),
    "two bars": lambda u, v: _box(u, v, 0, 0, 0.74, 0.9),
    "ring": _disk,
    "comb": lambda u, v: _box(u, v, 0, 0, 0.9, 0.9),
    "triangle with hole": _triangle,
    "ring with slot": _disk,
    "frame with gap": _solid_square,
    "U shape": _solid_square,
    "grid": _solid_square,
    "C shape": _disk,
    "H shape": lambda u, v: _box(u, v, 0, 0, 0.86, 0.9),
    "wheel": _disk,
}


@dataclass(frozen=True)
class GeneratedShape:
    """A procedural silhouette: ``base`` (disk, ellipse, box or triangle) plus ``bars``, minus ``cuts``.

    Each part is ``(kind, cu, cv, hu, hv)``: a box or an ellipse with centre (cu, cv) and half sizes (hu, hv).
    A plain dataclass rather than a closure, so sources that hold one can be pickled into DataLoader workers.
    """

    base: tuple
    bars: tuple[tuple, ...]
    cuts: tuple[tuple, ...]

    @staticmethod
    def _part(part: tuple, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        kind, cu, cv, hu, hv = part
        if kind == "box":
            return _box(u, v, cu, cv, hu, hv)
        if kind == "ellipse":
            return ((u - cu) / hu) ** 2 + ((v - cv) / hv) ** 2 < 1
        return _triangle(u, v)

    def outline(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        mask = self._part(self.base, u, v)
        for bar in self.bars:
            mask = mask | self._part(bar, u, v)
        return mask

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        mask = self.outline(u, v)
        for cut in self.cuts:
            mask = mask & ~self._part(cut, u, v)
        return mask

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "GeneratedShape":
        """A random silhouette: 0-2 holes, a slot from the right edge 40 % of the time, 0-1 bar."""
        base = [("ellipse", 0, 0, 0.9, 0.9), ("box", 0, 0, 0.85, float(rng.uniform(0.5, 0.85))),
                ("triangle", 0, 0, 0, 0), ("ellipse", 0, 0, 0.9, float(rng.uniform(0.5, 0.75)))][int(rng.integers(4))]
        cuts = []
        for _ in range(int(rng.integers(0, 3))):
            kind = ("ellipse", "box")[int(rng.integers(2))]
            cu, cv = (float(x) for x in rng.uniform(-0.4, 0.4, 2))
            half = float(rng.uniform(0.12, 0.3))
            cuts.append((kind, cu, cv, half, half * float(rng.uniform(0.6, 1.4))))
        if rng.random() < 0.4:
            cuts.append(("box", 0.6, float(rng.uniform(-0.3, 0.3)), 0.4, float(rng.uniform(0.1, 0.2))))
        bars = []
        for _ in range(int(rng.integers(0, 2))):
            offset = float(rng.uniform(-0.5, 0.5))
            bars.append(("box", offset, 0, 0.12, 0.9) if rng.random() < 0.5 else ("box", 0, offset, 0.9, 0.12))
        return cls(base=base, bars=tuple(bars), cuts=tuple(cuts))


def outline_of(shape: ShapeFn) -> ShapeFn | None:
    """The filled outline a shape's holes and slots are cut from, or None for a shape without any."""
    if isinstance(shape, GeneratedShape):
        return shape.outline if shape.cuts else None
    for name, named in SHAPES.items():
        if named is shape:
            return OUTLINES.get(name)
    return None
