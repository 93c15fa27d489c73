"""Pictures of what DPCN computes inside: feature maps, activation maps, pseudo masks, kernels, branch responses.

All plotting functions take tensors straight from ``model(..., return_intermediates=True).intermediates`` (pick one
episode with ``index``), draw one PNG figure and end with :func:`dpcn_lite.viz.finish` (shown inline, or saved when
``path`` is given). They return None, so a notebook cell prints nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from dpcn_lite.viz import ACTIVATION_CMAP, display_image, finish, image_grid, overlay_mask

PathLike = str | Path | None


def _figure(ncols: int, nrows: int = 1, size: float = 2.6):
    return image_grid(ncols, nrows, size)


def _numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)


def pca_rgb(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Project a ``CxHxW`` feature map on its first three principal components -> ``HxWx3`` in [0, 1]."""
    array = _numpy(features)
    c, h, w = array.shape
    pixels = array.reshape(c, -1).T
    pixels = pixels - pixels.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(pixels, full_matrices=False)
    projected = pixels @ components[:3].T
    if projected.shape[1] < 3:
        projected = np.pad(projected, ((0, 0), (0, 3 - projected.shape[1])))
    low, high = projected.min(axis=0), projected.max(axis=0)
    projected = (projected - low) / np.maximum(high - low, 1e-8)
    return projected.reshape(h, w, 3)


def plot_feature_pca(features: Mapping[str, torch.Tensor], image: np.ndarray | None = None,
                     path: PathLike = None) -> None:
    """One panel per named ``CxHxW`` feature map (e.g. {"mid": ..., "high": ...}) as PCA colours, image first."""
    panels = ([("image", image)] if image is not None else []) + [(k, pca_rgb(v)) for k, v in features.items()]
    fig, axes = _figure(len(panels))
    for ax, (title, picture) in zip(axes.flat, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
    finish(fig, path)


def _map_panel(ax, picture: np.ndarray, title: str, image: np.ndarray | None) -> None:
    if image is not None:
        ax.imshow(image, extent=(0, 1, 1, 0))
        ax.imshow(picture, cmap=ACTIVATION_CMAP, vmin=0, vmax=1, alpha=0.6, extent=(0, 1, 1, 0),
                  interpolation="bilinear")
    else:
        ax.imshow(picture, cmap=ACTIVATION_CMAP, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)


def plot_activation_maps(intermediates: Mapping[str, torch.Tensor], index: int = 0,
                         windows: Sequence[tuple[int, int]] = ((5, 1), (3, 3), (1, 5)),
                         query_image: np.ndarray | None = None, path: PathLike = None) -> None:
    """SAM's activation maps (one per window) and their mean, the initial pseudo mask M_pse^0."""
    if "activation_maps" not in intermediates:
        raise KeyError("No 'activation_maps' here: run the model with use_sam=True and return_intermediates=True.")
    maps = _numpy(intermediates["activation_maps"][index])
    titles = [f"M_act {dh}x{dw}" for dh, dw in windows][: len(maps)]
    fig, axes = _figure(len(maps) + 1)
    for ax, picture, title in zip(axes.flat, maps, titles):
        _map_panel(ax, picture, title, query_image)
    _map_panel(axes.flat[-1], _numpy(intermediates["pseudo_mask_initial"][index, 0]), "M_pse^0 (mean)", query_image)
    finish(fig, path)


def plot_pseudo_masks(intermediates: Mapping[str, torch.Tensor], index: int = 0,
                      query_image: np.ndarray | None = None, query_mask: np.ndarray | None = None,
                      path: PathLike = None) -> None:
    """Initial vs refined pseudo mask (SAM -> FFM), beside the query and its ground truth when given."""
    panels = []
    if query_image is not None:
        shown = overlay_mask(query_image, query_mask) if query_mask is not None else query_image
        panels.append(("query" + (" + truth" if query_mask is not None else ""), shown, False))
    for key, title in (("pseudo_mask_initial", "M_pse^0 initial"), ("pseudo_mask_refined", "M_pse^r refined")):
        if key in intermediates:
            panels.append((title, _numpy(intermediates[key][index, 0]), True))
    fig, axes = _figure(len(panels))
    for ax, (title, picture, is_map) in zip(axes.flat, panels):
        if is_map:
            _map_panel(ax, picture, title, None)
        else:
            ax.imshow(picture)
            ax.set_title(title)
    finish(fig, path)


def plot_kernels(intermediates: Mapping[str, torch.Tensor], index: int = 0, channels: int = 6,
                 path: PathLike = None) -> None:
    """The generated dynamic kernels (rows: v, h, s; columns: the first ``channels`` channels), diverging colours."""
    names = [n for n in ("kernel_v", "kernel_h", "kernel_s") if n in intermediates]
    if not names:
        raise KeyError("No kernels here: run the model with use_dcm=True and return_intermediates=True.")
    fig, axes = _figure(channels, len(names), size=1.4)
    for row, name in enumerate(names):
        kernels = _numpy(intermediates[name][index])
        limit = max(float(np.abs(kernels[:channels]).max()), 1e-8)
        for col in range(channels):
            ax = axes[row, col]
            if col < kernels.shape[0]:
                ax.imshow(kernels[col], cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
            if col == 0:
                ax.set_ylabel(name.replace("kernel_", "") + f" {kernels.shape[1]}x{kernels.shape[2]}")
            if row == 0:
                ax.set_title(f"ch {col}", fontsize=8)
    finish(fig, path)


def plot_branch_responses(intermediates: Mapping[str, torch.Tensor], index: int = 0,
                          query_image: np.ndarray | None = None, path: PathLike = None) -> None:
    """Channel-mean magnitude of x~_q and of each dynamic-conv response (what each kernel shape emphasises)."""
    names = [n for n in ("query_filtered", "response_v", "response_h", "response_s") if n in intermediates]
    fig, axes = _figure(len(names))
    for ax, name in zip(axes.flat, names):
        energy = np.abs(_numpy(intermediates[name][index])).mean(axis=0)
        energy = (energy - energy.min()) / max(float(energy.max() - energy.min()), 1e-8)
        _map_panel(ax, energy, name, query_image)
    finish(fig, path)


def plot_prediction(logits: torch.Tensor, index: int = 0, query_image: np.ndarray | None = None,
                    query_mask: np.ndarray | None = None, path: PathLike = None) -> None:
    """Foreground probability and the argmax mask (over the query), with the ground truth when given."""
    probability = _numpy(logits[index].softmax(dim=0)[1])
    predicted = (probability > 0.5).astype(np.int64)
    panels = 2 + (query_mask is not None)
    fig, axes = _figure(panels)
    _map_panel(axes.flat[0], probability, "P(foreground)", None)
    base = query_image if query_image is not None else np.zeros((*predicted.shape, 3), dtype=np.float32)
    axes.flat[1].imshow(overlay_mask(base, predicted))
    axes.flat[1].set_title("prediction")
    if query_mask is not None:
        axes.flat[2].imshow(overlay_mask(base, query_mask))
        axes.flat[2].set_title("ground truth")
    finish(fig, path)


__all__ = [
    "display_image", "pca_rgb", "plot_activation_maps", "plot_branch_responses", "plot_feature_pca", "plot_kernels",
    "plot_prediction", "plot_pseudo_masks",
]
