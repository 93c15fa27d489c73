"""Plotting helpers for the course. One fixed colour scheme; every helper draws PNG figures and closes them.

Submodules: ``episodes`` (data, episodes, galleries), ``activations`` (what the model computes inside),
``training`` (curves and predictions). Shared here: the colours, :func:`display_image` (the one way back from a
normalised tensor to a picture), :func:`overlay_mask`, :func:`image_grid` and :func:`finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from data_utils.validation import IGNORE_INDEX

# matplotlib is imported inside the functions that draw, so that importing this module (and dpcn_lite.evaluate,
# which uses display_image) works where matplotlib is not installed, e.g. on a bare GPU machine.
if TYPE_CHECKING:
    import matplotlib.figure

# One colour scheme for every figure in the course: foreground, background, ignore (255).
FOREGROUND_RGB = (0.95, 0.30, 0.20)
IGNORE_RGB = (1.0, 1.0, 1.0)
ACTIVATION_CMAP = "magma"


def display_image(image: torch.Tensor | np.ndarray, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> np.ndarray:
    """``HxWx3`` in [0, 1] from a normalised ``3xHxW`` tensor or array (pass the ``mean``/``std`` it was normalised
    with, e.g. a model's ``normalization``), or from a ``uint8``/[0, 1] ``HxWx3`` image."""
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if mean is not None and std is not None:
        array = array * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    elif array.max() > 1.0:
        array = array / 255.0
    return np.clip(array, 0.0, 1.0)


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.3, dim: float = 0.35,
                 outline: bool = True) -> np.ndarray:
    """Show a {0, 1, 255} mask on an ``HxWx3`` image in [0, 1] so it reads at a glance on any texture.

    Everything outside the mask is darkened (``dim``), the mask is lightly tinted (``alpha``) and, with ``outline``,
    its border drawn in full colour; ignore pixels (255) are whitened. A plain tint disappears on saturated textures;
    dimming the rest keeps the object's own pixels visible and makes holes in it obvious.
    """
    out = np.asarray(image, dtype=np.float32).copy()
    if out.max() > 1.0:
        out = out / 255.0
    mask = np.asarray(mask)
    fg = mask == 1
    ign = mask == IGNORE_INDEX
    colour = np.array(FOREGROUND_RGB, dtype=np.float32)
    out[~fg] *= dim
    out[fg] = (1 - alpha) * out[fg] + alpha * colour
    if outline and fg.any():
        padded = np.pad(fg, 1, mode="edge")
        inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        out[fg & ~inside] = colour
    out[ign] = 0.5 * out[ign] + 0.5 * np.array(IGNORE_RGB, dtype=np.float32)
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
