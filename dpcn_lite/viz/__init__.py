"""Plotting helpers for the course. One fixed colour scheme; every helper draws PNG figures and closes them.

Submodules: ``episodes`` (data, episodes, galleries), ``activations`` (what the model computes inside),
``training`` (curves and predictions).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

import numpy as np

# One colour scheme for every figure in the course: foreground, background, ignore (255).
FOREGROUND_RGB = (0.95, 0.30, 0.20)
IGNORE_RGB = (1.0, 1.0, 1.0)
ACTIVATION_CMAP = "magma"


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a {0, 1, 255} mask over an ``HxWx3`` image in [0, 1]: foreground tinted, ignore pixels whitened."""
    out = np.asarray(image, dtype=np.float32).copy()
    if out.max() > 1.0:
        out = out / 255.0
    mask = np.asarray(mask)
    fg = mask == 1
    ign = mask == 255
    out[fg] = (1 - alpha) * out[fg] + alpha * np.array(FOREGROUND_RGB, dtype=np.float32)
    out[ign] = (1 - alpha) * out[ign] + alpha * np.array(IGNORE_RGB, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def image_grid(ncols: int, nrows: int = 1, size: float = 2.5):
    """A figure of ``nrows x ncols`` image panels without ticks; returns ``(fig, axes)`` with a 2-D ``axes`` array."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def finish(fig: "matplotlib.figure.Figure", path: str | Path | None = None) -> None:
    """Save ``fig`` as PNG when a path is given, else show it inline; always close it (so nothing is returned)."""
    import matplotlib.pyplot as plt

    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=fig.dpi, bbox_inches="tight")
    else:
        plt.show()
    plt.close(fig)
