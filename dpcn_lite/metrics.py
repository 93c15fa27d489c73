"""The field's few-shot segmentation metrics, exactly as PFENet and HSNet compute them (notes §4.2).

Three rules decide the numbers, and each is easy to get subtly wrong:

1. **Ignore pixels are removed first.** Wherever the label is 255 (object boundaries, padding) the pixel counts for
   nothing: neither the prediction nor the label is looked at there.
2. **Per-class IoU is a ratio of sums, not a mean of ratios.** For each class ``c`` the foreground intersections and
   unions of *all* episodes whose target is ``c`` are summed first, and ``IoU_c = ΣI_c / ΣU_c``. A large object
   therefore weighs more than a small one, and an episode with a tiny object cannot drag the class down on its own.
3. **FB-IoU ignores class identity.** Foreground and background intersections and unions are summed over every
   episode of the fold; FB-IoU is the mean of the two resulting IoUs.

mIoU is the mean of ``IoU_c`` over the fold's classes. Labels are compared at their *original* resolution:
:func:`prediction_at_original_size` turns a network's logits into a prediction of the original label's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from data_utils.validation import IGNORE_INDEX


@dataclass(frozen=True)
class EpisodeCounts:
    """Pixel counts of one episode after ignore pixels are removed (foreground = 1, background = 0)."""

    fg_intersection: int
    fg_union: int
    bg_intersection: int
    bg_union: int

    @property
    def fg_iou(self) -> float:
        """This episode's own foreground IoU (NaN when nothing is left to count). Not what mIoU averages."""
        return self.fg_intersection / self.fg_union if self.fg_union else math.nan


def episode_counts(prediction: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> EpisodeCounts:
    """Foreground and background intersection/union of one episode, ignoring pixels where ``label == 255``.

    ``prediction`` holds 0/1 per pixel, ``label`` holds 0/1/255; both have the same ``H×W`` shape (compare at the
    label's resolution: see :func:`prediction_at_original_size`).
    """
    prediction = torch.as_tensor(prediction)
    label = torch.as_tensor(label)
    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction has shape {tuple(prediction.shape)} but the label has {tuple(label.shape)}; "
            "resize the logits to the label's size before counting (prediction_at_original_size does it)."
        )
    valid = label != IGNORE_INDEX
    bad_labels = torch.unique(label[valid])
    if bool(((bad_labels != 0) & (bad_labels != 1)).any()):
        raise ValueError(f"label must hold only 0, 1 and 255, found {bad_labels.tolist()}; binarise it first.")
    pred_fg = (prediction == 1) & valid
    pred_bg = (prediction != 1) & valid
    true_fg = (label == 1) & valid
    true_bg = (label == 0) & valid
    return EpisodeCounts(
        fg_intersection=int((pred_fg & true_fg).sum()),
        fg_union=int((pred_fg | true_fg).sum()),
        bg_intersection=int((pred_bg & true_bg).sum()),
        bg_union=int((pred_bg | true_bg).sum()),
    )


def prediction_at_original_size(
    logits: torch.Tensor, valid_hw: Sequence[int], original_hw: Sequence[int]
) -> torch.Tensor:
    """Turn one episode's ``2×H×W`` logits into an ``H0×W0`` 0/1 prediction at the label's original size.

    The input image was resized (aspect kept) to ``valid_hw`` and padded to ``H×W``; the padding is cropped away, the
    logits are upsampled bilinearly to the original size, and the class with the larger logit wins. Upsampling logits
    (not hard masks) keeps boundaries smooth, as PFENet's ``ori_resize`` evaluation does.
    """
    if logits.dim() != 3 or logits.shape[0] != 2:
        raise ValueError(f"expected logits of shape 2×H×W for one episode, got {tuple(logits.shape)}")
    valid_h, valid_w = int(valid_hw[0]), int(valid_hw[1])
    if not (0 < valid_h <= logits.shape[1] and 0 < valid_w <= logits.shape[2]):
        raise ValueError(f"valid size {valid_h}×{valid_w} does not fit inside logits of size {tuple(logits.shape[1:])}")
    cropped = logits[:, :valid_h, :valid_w].float().unsqueeze(0)
    resized = F.interpolate(cropped, size=(int(original_hw[0]), int(original_hw[1])), mode="bilinear", align_corners=True)
    return resized[0].argmax(dim=0)


class FewShotIoU:
    """Accumulates episodes and reports per-class IoU (ΣI/ΣU), mIoU over the fold's classes, and FB-IoU.

    >>> metric = FewShotIoU(class_ids=[1, 2])
    >>> metric.update(prediction, label, class_id=1)   # once per episode
    >>> metric.compute()["mIoU"]
    """

    def __init__(self, class_ids: Iterable[int]):
        self.class_ids = [int(c) for c in class_ids]
        if not self.class_ids:
            raise ValueError("FewShotIoU needs the fold's class ids (a non-empty list).")
        self.reset()

    def reset(self) -> None:
        self.intersection = {c: 0 for c in self.class_ids}
        self.union = {c: 0 for c in self.class_ids}
        self.episodes_per_class = {c: 0 for c in self.class_ids}
        self.fg_intersection = self.fg_union = self.bg_intersection = self.bg_union = 0
        self.episodes = 0

    def add_counts(self, counts: EpisodeCounts, class_id: int) -> None:
        """Add one episode's counts under its target class."""
        class_id = int(class_id)
        if class_id not in self.intersection:
            raise KeyError(f"class {class_id} is not one of this fold's classes {self.class_ids}")
        self.intersection[class_id] += counts.fg_intersection
        self.union[class_id] += counts.fg_union
        self.episodes_per_class[class_id] += 1
        self.fg_intersection += counts.fg_intersection
        self.fg_union += counts.fg_union
        self.bg_intersection += counts.bg_intersection
        self.bg_union += counts.bg_union
        self.episodes += 1

    def update(self, prediction: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray, class_id: int) -> EpisodeCounts:
        """Count one episode (0/1 prediction vs 0/1/255 label at the same size) and add it; returns its counts."""
        counts = episode_counts(prediction, label)
        self.add_counts(counts, class_id)
        return counts

    def per_class_iou(self) -> dict[int, float]:
        """``IoU_c = ΣI_c / ΣU_c``; NaN for a class that has no counted pixels yet (no episodes, or all ignore)."""
        return {c: (self.intersection[c] / self.union[c] if self.union[c] else math.nan) for c in self.class_ids}

    def compute(self) -> dict:
        """The metrics as plain Python numbers (fractions in [0, 1]).

        mIoU averages the classes that have counted pixels; ``classes_without_episodes`` names the others, so a short
        evaluation that misses a class is visible rather than silently scored 0.
        """
        per_class = self.per_class_iou()
        scored = [v for v in per_class.values() if not math.isnan(v)]
        fg_iou = self.fg_intersection / self.fg_union if self.fg_union else math.nan
        bg_iou = self.bg_intersection / self.bg_union if self.bg_union else math.nan
        return {
            "mIoU": float(np.mean(scored)) if scored else math.nan,
            "FB-IoU": (fg_iou + bg_iou) / 2,
            "fg_IoU": fg_iou,
            "bg_IoU": bg_iou,
            "per_class_IoU": {str(c): v for c, v in per_class.items()},
            "episodes_per_class": {str(c): n for c, n in self.episodes_per_class.items()},
            "classes_without_episodes": [c for c, v in per_class.items() if math.isnan(v)],
            "episodes": self.episodes,
        }


class StructureFill:
    """Does a model leave holes and slots open? Per episode, two shares of pixels predicted foreground.

    * ``hole_fill``: of the target's *hole pixels* (inside its filled outline, not in its shape; the synthetic
      generator knows them, ``SyntheticSource.holes``). Plain prototype matching tends to fill them in.
    * ``body_fill``: of the target's own pixels (its recall), so that a model cannot lower hole_fill by predicting
      less of everything.

    Each is averaged over episodes; an episode whose target has no hole pixels (a disk, a cross) is left out of
    ``hole_fill`` rather than counted as NaN or 0. Ignore (255) pixels count for neither.
    """

    def __init__(self) -> None:
        self.hole_shares: list[float] = []
        self.body_shares: list[float] = []

    def update(self, prediction: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray,
               holes: torch.Tensor | np.ndarray) -> None:
        """One episode: 0/1 ``prediction``, 0/1/255 ``label`` and boolean ``holes``, all at the label's size."""
        prediction, label, holes = torch.as_tensor(prediction), torch.as_tensor(label), torch.as_tensor(holes)
        if not prediction.shape == label.shape == holes.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)}, label {tuple(label.shape)} and holes "
                             f"{tuple(holes.shape)} must have the same size.")
        foreground = prediction == 1
        body = label == 1
        hole = holes.bool() & (label == 0)
        if bool(body.any()):
            self.body_shares.append(float(foreground[body].float().mean()))
        if bool(hole.any()):
            self.hole_shares.append(float(foreground[hole].float().mean()))

    def compute(self) -> dict:
        """``hole_fill`` and ``body_fill`` (fractions; None when no episode had such pixels) and the episode counts."""
        def mean(values: list[float]) -> float | None:
            return float(np.mean(values)) if values else None
        return {"hole_fill": mean(self.hole_shares), "body_fill": mean(self.body_shares),
                "hole_episodes": len(self.hole_shares)}


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) for reporting several seeds as mean ± std."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_and_std needs at least one value")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0
