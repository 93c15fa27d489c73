"""Checks for notebook 08 (k-shot): pooling the foreground of K shots, per-shot fusions, ΣI/ΣU over episodes.

Each ``check_*`` takes the student's function, runs it on small seeded inputs built to catch the usual mistakes, and
compares it with the library's own version (:mod:`dpcn_lite.modules.dcm`, :mod:`dpcn_lite.kshot`,
:class:`dpcn_lite.metrics.FewShotIoU`). It prints one ``✓`` line or raises
:class:`~dpcn_lite.exercises.ExerciseError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dpcn_lite.exercises import ExerciseError, expect, expect_close, passed, run_answer
from dpcn_lite.kshot import fuse_probabilities
from dpcn_lite.metrics import EpisodeCounts, FewShotIoU
from dpcn_lite.modules.dcm import foreground_vectors, pool_sequence

__all__ = [
    "averaged_prototypes_reference",
    "check_averaged_prototypes",
    "check_fuse_probabilities",
    "check_mean_iou",
    "check_pooled_prototypes",
    "check_vote",
    "mean_iou_reference",
    "pooled_prototypes_reference",
    "shot_support",
]


# ---------------------------------------------------------------------------------------------------------------
# Exercise 1 and 2: foreground pooling over K shots vs averaging per-shot prototypes


def shot_support(seed: int = 0, shots: int = 3, channels: int = 4, size: tuple[int, int] = (5, 6),
                 empty_shot: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode's supports ``K x C x h x w`` and soft masks ``K x 1 x h x w`` with a different N_fg per shot.

    The masks hold soft values on both sides of 0.5 and exactly 0.5 (which is *not* foreground); the last shot has no
    foreground at all when ``empty_shot`` (its object vanished at feature resolution).
    """
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(shots, channels, *size, generator=g)
    levels = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0])
    masks = levels[torch.randint(0, len(levels), (shots, 1, *size), generator=g)]
    for shot in range(shots):  # a different amount of foreground per shot: keep the first rows only, more each shot
        masks[shot, :, 1 + shot + 1:] = torch.where(masks[shot, :, 1 + shot + 1:] > 0.5, 0.3,
                                                    masks[shot, :, 1 + shot + 1:])
    masks[:, :, 0, 0] = 1.0  # every shot has at least one foreground vector ...
    if empty_shot:
        masks[-1] = torch.where(masks[-1] > 0.5, 0.5, masks[-1])  # ... except the last: only 0.5 and below
    return support, masks


def pooled_prototypes_reference(support: torch.Tensor, soft_masks: torch.Tensor, size: int) -> torch.Tensor:
    """DPCN's k-shot prototypes: the foreground vectors of all shots, one sequence, pooled to ``C x size``."""
    return pool_sequence(foreground_vectors(support, soft_masks), size)


def averaged_prototypes_reference(support: torch.Tensor, soft_masks: torch.Tensor, size: int) -> torch.Tensor:
    """The alternative: each shot's own foreground pooled to ``C x size``, then the mean over the shots."""
    per_shot = [pool_sequence(foreground_vectors(support[k:k + 1], soft_masks[k:k + 1]), size)
                for k in range(support.shape[0])]
    return torch.stack(per_shot).mean(dim=0)


_POOL_HINT = ("P_fg holds the support vectors where the soft mask is > 0.5 (exactly 0.5 is not foreground), shot "
              "after shot and in raster order within a shot (support.permute(0, 2, 3, 1)[mask]); the N_fg x C "
              "sequence of ALL shots is pooled once, e.g. F.adaptive_avg_pool1d(P_fg.t()[None], size)[0].")


def check_pooled_prototypes(answer: Callable[..., Any]) -> None:
    """``answer(support, soft_masks, size)`` -> ``C x size``: the foreground vectors of all shots pooled together."""
    what = "pooled_prototypes"
    cases = [(shot_support(1, shots=5, size=(6, 7), empty_shot=False), 5), (shot_support(0, shots=3), 5),
             (shot_support(2, shots=2), 3), (shot_support(3, shots=1, empty_shot=False), 4)]
    for (support, masks), size in cases:
        got = run_answer(answer, support.clone(), masks.clone(), size, what=what)
        expected = pooled_prototypes_reference(support, masks, size)
        expect_close(got, expected, what=f"{what} (K = {support.shape[0]}, S = {size})", hint=_POOL_HINT)
    passed(f"{what}: one sequence of all shots' foreground vectors, pooled to S prototypes")


def check_averaged_prototypes(answer: Callable[..., Any]) -> None:
    """``answer(support, soft_masks, size)`` -> ``C x size``: each shot pooled on its own, then averaged."""
    what = "averaged_prototypes"
    hint = ("pool each shot's own foreground vectors (soft mask > 0.5) to C x size, then take the mean over the K "
            "shots (dim 0 of the stacked K x C x size tensor); pooling the concatenation is the other exercise.")
    cases = [(shot_support(4, shots=3, empty_shot=False), 5), (shot_support(5, shots=4, size=(6, 6),
                                                                             empty_shot=False), 3)]
    for (support, masks), size in cases:
        got = run_answer(answer, support.clone(), masks.clone(), size, what=what)
        expected = averaged_prototypes_reference(support, masks, size)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape):
            pooled = pooled_prototypes_reference(support, masks, size)
            expect(not torch.allclose(got, pooled, atol=1e-6) or torch.allclose(pooled, expected, atol=1e-6),
                   f"{what}: this is the pooled version (all shots in one sequence). Here each shot is pooled to "
                   "S prototypes on its own first, and the K results are averaged.")
        expect_close(got, expected, what=f"{what} (K = {support.shape[0]}, S = {size})", hint=hint)
    passed(f"{what}: each shot pooled to S prototypes, then averaged over the shots")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 3 and 4: fusing per-shot predictions


def _probabilities(seed: int, batch: int = 2, shots: int = 3, size: tuple[int, int] = (4, 5)) -> torch.Tensor:
    return torch.rand(batch, shots, *size, generator=torch.Generator().manual_seed(seed))


def check_fuse_probabilities(answer: Callable[..., Any]) -> None:
    """``answer(probabilities, mode)``: ``B x K x h x w`` -> ``B x h x w`` for ``mode`` "mask_avg" and "or"."""
    what = "fuse_probabilities"
    hints = {
        "mask_avg": "mask average is the mean of the K per-shot probabilities at each pixel: reduce dim 1 (the shots), "
                    "not dim 0 (the episodes).",
        "or": "mask OR keeps a probability: the largest per-shot probability at each pixel, over dim 1. "
              "tensor.max(dim=1) returns (values, indices): take .values.",
    }
    for probabilities in (_probabilities(0), _probabilities(1, batch=3, shots=5), _probabilities(2, batch=1, shots=1)):
        for mode in ("mask_avg", "or"):
            got = run_answer(answer, probabilities.clone(), mode, what=what)
            expect_close(got, fuse_probabilities(probabilities, mode),
                         what=f"{what}(mode={mode!r}, B x K = {tuple(probabilities.shape[:2])})", hint=hints[mode])
    passed(f"{what}: mask average and mask OR agree with dpcn_lite.kshot")


def vote_cases() -> torch.Tensor:
    """Per-shot probabilities ``B x K x 2 x 3`` (K = 4) where the usual mistakes of the vote give other masks.

    Episode 0: the most-voted pixel has 4 votes. Episode 1: at most 2 votes, so 1 vote is already half of the most
    (and a quarter of K). Episode 2: no shot votes anywhere (all probabilities <= 0.5, some exactly 0.5).
    """
    votes = torch.tensor([
        [[4, 3, 2], [1, 0, 2]],
        [[2, 1, 0], [1, 1, 2]],
        [[0, 0, 0], [0, 0, 0]],
    ])
    shots = 4
    yes, no = 0.8, 0.2
    p = torch.full((3, shots, 2, 3), no)
    for shot in range(shots):
        p[:, shot] = torch.where(votes > shot, yes, no)
    p[2, :2] = 0.5  # exactly 0.5 is not a vote
    return p


def check_vote(answer: Callable[..., Any]) -> None:
    """``answer(probabilities)``: ``B x K x h x w`` -> ``B x h x w`` 0/1 float, HSNet's vote."""
    what = "vote"
    cases = (vote_cases(), _probabilities(3, batch=2, shots=5, size=(6, 6)))
    for probabilities in cases:
        got = run_answer(answer, probabilities.clone(), what=what)
        expected = fuse_probabilities(probabilities, "vote")
        expect(isinstance(got, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(got).__name__}.")
        expect(not bool(torch.isnan(got.float()).any()),
               f"{what}: NaN in the result: an episode where no shot votes has a largest count of 0. Clamp that "
               "count to at least 1 before dividing.")
        expect_close(got, expected, what=what, hint=(
            "a shot votes for a pixel when its probability is > 0.5 (not >= 0.5); a pixel is foreground when its "
            "votes are >= half of the largest vote count of ITS episode (max over h x w per episode, not over the "
            "whole batch and not the number of shots K). Return a float 0/1 map."))
    passed(f"{what}: HSNet's vote agrees with dpcn_lite.kshot")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 5: mIoU over episodes is a mean over classes of ΣI / ΣU


MEAN_IOU_CASE = (
    # (class id, foreground intersection, foreground union) per episode; class 3 of the fold has no episode
    (1, 90, 100), (1, 1, 10), (2, 40, 50), (2, 0, 0), (2, 30, 100), (4, 5, 5),
)
MEAN_IOU_CLASSES = (1, 2, 3, 4)


def mean_iou_reference(episodes: Sequence[tuple[int, int, int]], class_ids: Sequence[int]) -> float:
    """The library's mIoU (:class:`FewShotIoU`) of ``(class id, intersection, union)`` episodes."""
    metric = FewShotIoU(class_ids)
    for class_id, intersection, union in episodes:
        metric.add_counts(EpisodeCounts(intersection, union, 0, 0), class_id)
    return metric.compute()["mIoU"]


def check_mean_iou(answer: Callable[..., Any]) -> None:
    """``answer(episodes, class_ids)`` -> float: the mean over classes of ΣI_c / ΣU_c."""
    what = "mean_iou"
    cases = [(MEAN_IOU_CASE, MEAN_IOU_CLASSES), (((1, 3, 4), (1, 1, 4), (2, 2, 2)), (1, 2))]
    for episodes, class_ids in cases:
        got = run_answer(answer, list(episodes), list(class_ids), what=what)
        expected = mean_iou_reference(episodes, class_ids)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {type(got).__name__}.") from None
        expect(not math.isnan(value), f"{what}: NaN. An episode with union 0 adds nothing; a class without episodes "
                                      "is left out of the mean (not divided by 0).")
        if not math.isclose(value, expected, abs_tol=1e-9):
            raise ExerciseError(
                f"{what}: {value:.4f}, expected {expected:.4f}. Sum the intersections and the unions of each class's "
                "episodes first, then divide (ΣI/ΣU, not the mean of per-episode IoUs); average those class IoUs "
                "over the classes that have episodes (a class without any is left out, not scored 0), not over the "
                "episodes.")
    passed(f"{what}: mIoU is the mean over classes of ΣI/ΣU")
