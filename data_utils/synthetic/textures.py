"""The texture pool that backgrounds (and, in the ``shapes`` benchmark, every object) draw from, and how a texture
is painted. (In ``categories`` an object's texture comes from its class: ``benchmarks.SyntheticBenchmark``.)

A :class:`Texture` is drawn by :func:`random_texture` from the image's own generator and painted by
:func:`paint_texture` at any coordinates, so rendering stays a pure function of the drawn layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checker", "noise", "gradient")


@dataclass(frozen=True)
class Texture:
    kind: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    period: float  # in output pixels
    angle: float
    noise_seed: int


def random_texture(rng: np.random.Generator, size: int, avoid: np.ndarray | None = None) -> Texture:
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


def texture_mean(t: Texture) -> np.ndarray:
    """The texture's mean colour (an object's texture is drawn away from the background's)."""
    return (np.asarray(t.color_a) + np.asarray(t.color_b)) / 2


def paint_texture(t: Texture, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
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
