"""Checks for notebook 07 (DPCN end to end): the fusion, the two losses, the poly schedule, the protocol's scores.

Each check runs the student's function on small seeded inputs and compares it with the library: the fusion with the
``fused`` tensor a DPCN computes (``return_intermediates=True``), the losses with
:func:`dpcn_lite.losses.episode_objective`, the schedule with PyTorch's ``PolynomialLR`` as the training loop steps
it, the scores with :class:`dpcn_lite.metrics.FewShotIoU`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from dpcn_lite.backbones import BackboneFeatures, EpisodeFeatures
from dpcn_lite.exercises import ExerciseError, expect, expect_close, passed, run_answer
from dpcn_lite.losses import episode_objective
from dpcn_lite.metrics import EpisodeCounts, FewShotIoU

__all__ = ["check_fusion", "check_poly_lr", "check_protocol_scores", "check_two_losses"]


def _call(answer: Callable[..., Any], *args: Any, what: str, hint: str, **kwargs: Any) -> Any:
    """``run_answer``, and an exception raised by the answer becomes a verdict with ``hint`` instead of a traceback."""
    try:
        return run_answer(answer, *args, what=what, **kwargs)
    except ExerciseError:
        raise
    except Exception as error:  # the student's code failed: say where to look
        raise ExerciseError(f"{what}: your function raised {type(error).__name__}: {error}. Hint: {hint}") from None


# --- 1. the fusion (Eq. 9) ----------------------------------------------------------------------------------------


def _fusion_case(batch: int, height: int, width: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A small DPCN's own pieces and its ``fused`` tensor, on a random episode of a non-square grid."""
    from dpcn_lite.config import get_preset
    from dpcn_lite.model import DPCN

    with torch.random.fork_rng():  # the notebook's own random state is left alone
        torch.manual_seed(seed)
        model = DPCN(get_preset("tiny")).eval()
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, 3, height, width, generator=generator)
    support = torch.randn(batch, 1, 3, height, width, generator=generator)
    masks = torch.zeros(batch, 1, height, width, dtype=torch.long)
    masks[..., height // 4: 3 * height // 4, width // 5: 3 * width // 5] = 1
    with torch.no_grad():
        inter = model(query, support, masks, return_intermediates=True).intermediates
    pieces = {"x_v": inter["response_v"], "x_h": inter["response_h"], "x_s": inter["response_s"],
              "prototype": inter["prototype"], "activation_maps": inter["activation_maps"],
              "refined_mask": inter["pseudo_mask_refined"]}
    return pieces, inter["fused"]


def check_fusion(fuse: Callable[..., torch.Tensor]) -> None:
    """``fuse(x_v, x_h, x_s, prototype, activation_maps, refined_mask)`` must equal DPCN's ``fused`` (4C + 4 channels,
    in the order of Eq. 9), on two batches with non-square grids."""
    order = "[x_v, x_h, x_s, x_p, M_act (3 maps), M_pse^r] along the channel axis (dim=1)"
    for batch, height, width, seed in ((2, 64, 96, 0), (3, 80, 48, 1)):
        pieces, expected = _fusion_case(batch, height, width, seed)
        got = _call(fuse, *pieces.values(), what="fuse",
                    hint="x_p is a B x C vector: give it the grid's h x w first (view as B x C x 1 x 1, then expand); "
                         "concatenate along dim=1.")
        channels = pieces["x_v"].shape[1]
        if isinstance(got, torch.Tensor) and got.dim() == 4 and got.shape[1] != expected.shape[1] \
                and got.shape[0] == expected.shape[0]:
            raise ExerciseError(f"fuse: {got.shape[1]} channels, expected 4C + 4 = {expected.shape[1]} (C = "
                                f"{channels}). Hint: {order}; the prototype counts C channels, the three activation "
                                "maps 3 and the refined mask 1.")
        expect_close(got, expected, what="fuse", hint=f"the order is {order}; x_p is p copied to every grid cell.",
                     atol=1e-6)
    passed("fuse: the head's input x_out is 4C + 4 channels in Eq. 9's order")


# --- 2. the two losses ----------------------------------------------------------------------------------------------


def _toy_segment(query: BackboneFeatures, support: BackboneFeatures, masks: torch.Tensor,
                 output_hw: tuple[int, int]) -> torch.Tensor:
    """A parameter-free segmenter: foreground logit = <query pixel, support prototype> - 1, upsampled."""
    grid = tuple(query.mid.shape[-2:])
    soft = F.interpolate((masks == 1).float().flatten(0, 1)[:, None], size=grid, mode="bilinear",
                         align_corners=False).view(*masks.shape[:2], 1, *grid)
    prototype = (support.mid * soft).sum(dim=(-2, -1)) / soft.sum(dim=(-2, -1)).clamp_min(1e-5)  # B x K x C
    score = torch.einsum("bchw,bc->bhw", query.mid, prototype.mean(dim=1)) - 1.0
    logits = torch.stack([torch.zeros_like(score), score], dim=1)
    return F.interpolate(logits, size=output_hw, mode="bilinear", align_corners=False)


def _loss_case(seed: int) -> tuple[EpisodeFeatures, torch.Tensor, torch.Tensor]:
    """Four 1-shot episodes whose labels hold 255; the third query's features are zero, so its predicted mask is
    empty and the reverse loss must skip it."""
    generator = torch.Generator().manual_seed(seed)
    b, c, h, w, size = 4, 6, 5, 7, (20, 28)
    support = BackboneFeatures(torch.randn(b, 1, c, h, w, generator=generator),
                               torch.randn(b, 1, c, h, w, generator=generator))
    # Queries that resemble their support (so most predictions are not empty), except the third: all zero.
    query = BackboneFeatures(support.mid[:, 0] + 0.5 * torch.randn(b, c, h, w, generator=generator),
                             torch.randn(b, c, h, w, generator=generator))
    query.mid[2] = 0.0
    query_mask = (torch.rand(b, *size, generator=generator) > 0.6).long()
    support_masks = (torch.rand(b, 1, *size, generator=generator) > 0.5).long()
    query_mask[:, 0, :] = 255  # an ignore band in every label
    support_masks[:, :, :, -1] = 255
    return EpisodeFeatures(query, support), query_mask, support_masks


def _tiny_dpcn_case(seed: int) -> tuple[Callable[..., torch.Tensor], EpisodeFeatures, torch.Tensor, torch.Tensor]:
    """A small untrained DPCN's segment function and the backbone features of three random 1-shot episodes."""
    from dpcn_lite.config import get_preset
    from dpcn_lite.model import DPCN

    with torch.random.fork_rng():  # the notebook's own random state is left alone
        torch.manual_seed(seed)
        model = DPCN(get_preset("tiny")).eval()
    generator = torch.Generator().manual_seed(seed)
    b, size = 3, (48, 64)
    with torch.no_grad():
        features = model.extract_episode_features(torch.randn(b, 3, *size, generator=generator),
                                                  torch.randn(b, 1, 3, *size, generator=generator), support_high=True)
    query_mask = (torch.rand(b, *size, generator=generator) > 0.7).long()
    query_mask[:, :2] = 255
    support_masks = torch.zeros(b, 1, *size, dtype=torch.long)
    support_masks[..., 10:30, 12:40] = 1
    support_masks[..., -2:, :] = 255

    def segment(query, support, masks, output_hw):
        return model.forward_features(query, support, masks, output_hw).logits

    return segment, features, query_mask, support_masks


def check_two_losses(two_losses: Callable[..., tuple]) -> None:
    """``two_losses(segment, features, query_mask, support_masks, reverse_weight)`` -> ``(main, reverse, total)`` as
    :func:`dpcn_lite.losses.episode_objective` computes them (1-shot episodes)."""
    hint_ignore = "pixels labelled 255 count for nothing: F.cross_entropy(..., ignore_index=255)."
    cases = [("a toy segmenter, one query with an empty prediction", _toy_segment, *_loss_case(0), 1.0),
             ("a toy segmenter, lambda = 0.5", _toy_segment, *_loss_case(1), 0.5),
             ("a small untrained DPCN", *_tiny_dpcn_case(0), 1.0)]
    for label, segment, features, query_mask, support_masks, weight in cases:
        with torch.no_grad():
            expected = episode_objective(segment, features, query_mask, support_masks, reverse_weight=weight)
            got = _call(two_losses, segment, features, query_mask, support_masks, weight, what="two_losses",
                        hint=hint_ignore + " The reverse pass: support features as the query, the query features as "
                                           "a 1-shot support with the predicted mask.")
        expect(isinstance(got, (tuple, list)) and len(got) == 3,
               "two_losses: return three values, (main, reverse, total).")
        main, reverse, total = (torch.as_tensor(v, dtype=torch.float32) for v in got)
        expect_close(main, expected["main"].float(), what=f"two_losses, main loss ({label})",
                     hint=hint_ignore + " Score the logits of the query against the query's label.")
        expect_close(reverse, expected["reverse"].float(), what=f"two_losses, reverse loss ({label})",
                     hint="the query's *predicted* mask (argmax) is the support mask of the reverse pass; skip the "
                          "episodes whose predicted mask is empty (keep = predicted.flatten(1).any(dim=1)); score "
                          "against the support's own label, 255 ignored.")
        expect_close(total, expected["loss"].float(), what=f"two_losses, total ({label})",
                     hint=f"total = main + lambda x reverse, here lambda = {weight}.")
    passed("two_losses: main + lambda x reverse, 255 ignored, empty predictions skipped, as the library's loss")


# --- 3. the poly schedule -------------------------------------------------------------------------------------------


def _torch_poly(base_lr: float, max_iterations: int, power: float, steps: int) -> list[float]:
    """The learning rate before each of ``steps`` optimiser steps, as the training loop's PolynomialLR gives it."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_iterations, power=power)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def check_poly_lr(poly_lr: Callable[..., float]) -> None:
    """``poly_lr(base_lr, iteration, max_iterations, power)``: the LR of iteration ``iteration`` (0 = the first step),
    equal to PyTorch's ``PolynomialLR`` as the loop steps it, and 0 from ``max_iterations`` on."""
    for base_lr, max_iterations, power in ((0.001, 1500, 0.9), (0.05, 37, 0.9), (0.2, 10, 2.0)):
        expected = torch.tensor(_torch_poly(base_lr, max_iterations, power, max_iterations + 3), dtype=torch.float64)
        got = []
        for iteration in range(max_iterations + 3):
            value = _call(poly_lr, base_lr, iteration, max_iterations, power, what="poly_lr",
                          hint="lr = base_lr * (1 - iteration / max_iterations) ** power, and 0 once iteration >= "
                               "max_iterations.")
            clamp = (f"past the end (iteration {iteration} > max_iterations = {max_iterations}), 1 - iteration / "
                     "max_iterations is negative and a fractional power of it is not a real number: clamp the "
                     "iteration at max_iterations.")
            if isinstance(value, complex) or (isinstance(value, (float, torch.Tensor)) and math.isnan(float(value))):
                raise ExerciseError(f"poly_lr: {value!r} at iteration {iteration}. Hint: {clamp}")
            try:
                got.append(float(value))
            except (TypeError, ValueError):
                raise ExerciseError(f"poly_lr: return a number, got {type(value).__name__} ({value!r}).") from None
        got_tensor = torch.tensor(got, dtype=torch.float64)
        expect_close(got_tensor, expected, what=f"poly_lr (base {base_lr:g}, {max_iterations} iterations, power "
                                                f"{power:g})",
                     hint="the factor is (1 - iteration / max_iterations) ** power: the power applies to the whole "
                          "bracket; iteration 0 gives base_lr, iteration max_iterations gives 0.",
                     atol=1e-9, rtol=1e-6)
    passed("poly_lr: base_lr x (1 - t / T) ^ power, 0 from T on, as the training loop's scheduler")


# --- 4. the protocol's scores ---------------------------------------------------------------------------------------


def _protocol_case() -> tuple[list[EpisodeCounts], list[int], list[int]]:
    """A big and a small object of class 1, two episodes of class 3, none of class 2 (left out of the mIoU)."""
    counts = [EpisodeCounts(30, 36, 50, 58), EpisodeCounts(1, 7, 57, 63), EpisodeCounts(12, 20, 40, 48),
              EpisodeCounts(0, 9, 55, 64)]
    return counts, [1, 1, 3, 3], [1, 2, 3]


def check_protocol_scores(protocol_scores: Callable[..., dict]) -> None:
    """``protocol_scores(counts, class_ids, fold_classes)`` -> ``{"per_class": {c: IoU or NaN}, "mIoU", "FB-IoU"}`` as
    :class:`dpcn_lite.metrics.FewShotIoU` computes them from the same per-episode counts."""
    counts, class_ids, fold_classes = _protocol_case()
    metric = FewShotIoU(fold_classes)
    for episode, class_id in zip(counts, class_ids):
        metric.add_counts(episode, class_id)
    expected = metric.compute()
    got = _call(protocol_scores, counts, class_ids, fold_classes, what="protocol_scores",
                hint="sum each class's I and U over its episodes, then divide; a class without episodes is NaN.")
    expect(isinstance(got, dict) and {"per_class", "mIoU", "FB-IoU"} <= set(got),
           "protocol_scores: return a dict with 'per_class', 'mIoU' and 'FB-IoU'.")
    per_class = got["per_class"]
    expect(isinstance(per_class, dict) and {int(c) for c in per_class} == set(fold_classes),
           f"protocol_scores: 'per_class' must map every class of the fold {fold_classes} to its IoU.")
    per_class = {int(c): float(v) for c, v in per_class.items()}
    for c in fold_classes:
        want = expected["per_class_IoU"][str(c)]
        if math.isnan(want):
            expect(math.isnan(per_class[c]), f"protocol_scores: class {c} has no episode, so its IoU is NaN (not "
                                             f"{per_class[c]:.3f}); it is left out of the mIoU.")
        elif not math.isclose(per_class[c], want, abs_tol=1e-9):
            episode_mean = sum(e.fg_intersection / e.fg_union for e, k in zip(counts, class_ids) if k == c) / \
                class_ids.count(c)
            hint = (" That is the mean of the episodes' IoUs: sum the intersections and the unions first, then "
                    "divide." if math.isclose(per_class[c], episode_mean, abs_tol=1e-9) else "")
            raise ExerciseError(f"protocol_scores: class {c} IoU {per_class[c]:.4f}, expected sum(I)/sum(U) = "
                                f"{want:.4f}.{hint}")
    miou = float(got["mIoU"])
    expect(math.isclose(miou, expected["mIoU"], abs_tol=1e-9),
           f"protocol_scores: mIoU {miou:.4f}, expected {expected['mIoU']:.4f}. Hint: average the classes that have "
           "episodes (a class without any is NaN and left out, not counted as 0).")
    fb = float(got["FB-IoU"])
    expect(math.isclose(fb, expected["FB-IoU"], abs_tol=1e-9),
           f"protocol_scores: FB-IoU {fb:.4f}, expected {expected['FB-IoU']:.4f}. Hint: sum the foreground I and U "
           "over all episodes (classes forgotten), the same for the background, then take the mean of the two IoUs.")
    passed("protocol_scores: class IoU = sum(I)/sum(U), mIoU over the classes with episodes, FB-IoU as the library")
