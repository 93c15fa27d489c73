"""Pictures of the data: one episode (supports and query with their masks) and a one-example-per-class gallery.

Every helper draws one PNG figure with :func:`dpcn_lite.viz.overlay_mask` and ends with
:func:`dpcn_lite.viz.finish` (shown inline, or saved when ``path`` is given); they return None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from data_utils.episodes import binarize
from data_utils.transforms import IMAGENET_NORMALIZATION
from dpcn_lite.viz import display_image, finish, image_grid, overlay_mask

PathLike = str | Path | None


def _figure(ncols: int, nrows: int = 1, size: float = 2.4):
    return image_grid(ncols, nrows, size)


def show_episode(
    episode: Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_NORMALIZATION.mean,
    std: Sequence[float] = IMAGENET_NORMALIZATION.std,
    path: PathLike = None,
) -> None:
    """The K supports and the query of one episode (an ``EpisodeDataset`` item): the target bright and tinted, the
    rest dimmed, ignore pixels white.

    Pass the ``mean``/``std`` of the normalisation the episode was made with (ImageNet by default).
    """
    supports = episode["support_images"]
    masks = episode["support_masks"]
    shots = supports.shape[0]
    fig, axes = _figure(shots + 1)
    for k in range(shots):
        axes[0, k].imshow(_emphasised(display_image(supports[k], mean, std), _numpy_mask(masks[k])))
        axes[0, k].set_title(f"support {k + 1}: {episode['support_ids'][k]}", fontsize=8)
    axes[0, shots].imshow(_emphasised(display_image(episode["query_image"], mean, std),
                                      _numpy_mask(episode["query_mask"])))
    axes[0, shots].set_title(f"query: {episode['query_id']}", fontsize=8)
    class_id = int(episode["class_id"])
    name = class_names[class_id - 1] if class_names is not None else f"class {class_id}"
    fig.suptitle(f"{shots}-shot episode, target: {name}", fontsize=10)
    fig.tight_layout()
    finish(fig, path)


def _emphasised(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return overlay_mask(image, mask)


def _numpy_mask(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    return mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)


def dim_outside(image: np.ndarray, mask: np.ndarray, factor: float = 0.35) -> np.ndarray:
    """Darken everything that is not the target (mask != 1), so the target and its holes stand out."""
    out = image.copy()
    out[np.asarray(mask) != 1] *= factor
    return out


def class_examples(source: Any, split: str = "train", candidates: int = 6,
                   classes: list[int] | None = None) -> dict[int, str]:
    """One image id per class (default: all): of the first ``candidates`` qualifying images, where it is largest."""
    index = source.class_index(split)
    chosen = {}
    for class_id in classes or range(1, source.num_classes + 1):
        ids = index[class_id][:candidates]
        if ids:
            chosen[class_id] = max(ids, key=lambda i: int((source.load_label(i) == class_id).sum()))
    return chosen


def show_class_gallery(
    source: Any,
    split: str = "train",
    folds: int = 4,
    path: PathLike = None,
    size: float = 2.3,
) -> None:
    """One example per class, target class overlaid; one row per fold (classes 5i+1..5i+5 style folds)."""
    fold_classes = [source.fold_classes(fold, "test") for fold in range(folds)]
    examples = class_examples(source, split, classes=[c for classes in fold_classes for c in classes])
    per_fold = len(fold_classes[0])
    fig, axes = _figure(per_fold, folds, size=size)
    for fold in range(folds):
        for position, class_id in enumerate(fold_classes[fold]):
            ax = axes[fold, position]
            if class_id not in examples:
                ax.set_title(f"{class_id}: (no example)", fontsize=8)
                continue
            image, label = source.load(examples[class_id])
            ax.imshow(_emphasised(display_image(image), binarize(label, class_id)))
            ax.set_title(f"{class_id} · {source.class_name(class_id)}", fontsize=9)
            if position == 0:
                ax.set_ylabel(f"fold {fold}", fontsize=11, fontweight="bold")
    benchmark = getattr(source, "benchmark", None)
    name = f"{source.name} ({benchmark.tag})" if benchmark is not None else source.name
    fig.suptitle(f"{name}: one {split} example per class "
                 "(target bright and tinted, rest dimmed, ignore band white)", fontsize=11)
    fig.tight_layout()
    finish(fig, path)
