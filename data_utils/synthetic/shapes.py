"""The 20 class silhouettes: boolean predicates on object coordinates (u to the right, v downwards; an object fills
about [-0.9, 0.9]²). Classes differ by structure (holes, slots, thin parts), never by colour or texture.
"""

from __future__ import annotations

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
