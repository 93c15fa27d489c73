"""Checks for notebook 03 (prototypes): masked average pooling, the cosine map, PANet's two-prototype rule, and
PFENet's prior.

Each check runs the learner's function on small seeded inputs, compares it with the library
(:mod:`dpcn_lite.modules.prototypes`, :class:`dpcn_lite.baselines.PrototypeSegmenter`'s head) or with a value computed
here, prints one ``✓`` line when it agrees and raises :class:`~dpcn_lite.exercises.ExerciseError` with a hint when it
does not. Where a usual mistake gives a recognisable answer (a swapped channel, a missing eps, the wrong axis), the
message names that mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from dpcn_lite.exercises import (call_answer as _call, ExerciseError, expect, expect_close,
                                  name_mistake as _name_mistake, passed)
from dpcn_lite.modules.prototypes import cosine_prior, masked_average_pooling, minmax_normalize

__all__ = ["check_cosine_map", "check_cosine_prior", "check_masked_average_pooling", "check_panet_logits",
           "panet_logits_reference"]


# --------------------------------------------------------------------------------------- masked average pooling


def check_masked_average_pooling(answer: Callable[..., Any]) -> None:
    """``answer(features, mask, eps)``: ...xCxHxW features, ...x1xHxW soft mask -> ...xC, as the library's MAP."""
    what = "masked_average_pooling_eps"
    generator = torch.Generator().manual_seed(3)
    eps = 5e-4
    hint = "p = (features * mask).sum over H and W, divided by (mask.sum over H and W + eps)."

    # 1. one binary mask: the plain weighted mean
    features = torch.randn(4, 5, 6, generator=generator)  # C x H x W
    binary = torch.zeros(1, 5, 6)
    binary[0, 1:4, 2:5] = 1.0
    got = _call(answer, features.clone(), binary.clone(), eps, what=what, hint=hint)
    expected = masked_average_pooling(features, binary, eps)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{what}: one C x H x W map and a 1 x H x W mask gave shape {tuple(got.shape)}, expected "
                            f"{tuple(expected.shape)} (one value per channel). Sum over the last two dimensions "
                            "(dim=(-2, -1)) only; the 1-channel mask broadcasts over the C channels.")
    _name_mistake(got, [
        ((features * binary).mean(dim=(-2, -1)), "you divided by H * W (a plain mean over the whole grid); divide by "
                                                  "the mask's area, sum(mask) + eps, instead."),
        ((features * binary).sum(dim=(-2, -1)), "you returned the sum; divide it by the mask's area plus eps."),
    ], what)
    expect_close(got, expected, what=f"{what} of a binary mask", hint=hint)

    # 2. an empty mask: the zero vector, not NaN
    empty = torch.zeros(1, 5, 6)
    got = _call(answer, features.clone(), empty, eps, what=what, hint=hint)
    expect(isinstance(got, torch.Tensor) and not bool(torch.isnan(got).any()),
           f"{what}: an empty mask gives NaN (0 / 0). Add eps to the area: sum(mask) + eps.")
    expect_close(got, torch.zeros(4), what=f"{what} of an empty mask",
                 hint="an empty mask must give the zero vector: (0 * x).sum() / (0 + eps) = 0.")

    # 3. a nearly empty mask: eps must be the one passed in, added (not a floor)
    faint = binary * 1e-3 * torch.rand(1, 5, 6, generator=generator)  # soft and faint: area a few times eps
    got = _call(answer, features.clone(), faint, eps, what=what, hint=hint)
    expected = masked_average_pooling(features, faint, eps)
    area = faint.sum()
    _name_mistake(got, [
        ((features * faint).sum(dim=(-2, -1)) / area.clamp(min=eps),
         "you took max(area, eps); PFENet's MAP ADDS eps to the area: sum(mask) + eps."),
        ((features * faint).sum(dim=(-2, -1)) / area, "the eps is missing from the denominator (sum(mask) + eps)."),
    ], what)
    binarised = (faint > 0).float()
    _name_mistake(got, [
        ((features * binarised).sum(dim=(-2, -1)) / (binarised.sum(dim=(-2, -1)) + eps),
         "you thresholded the mask; weight every feature by the soft mask value itself (M_s is in [0, 1])."),
    ], what)
    expect_close(got, expected, what=f"{what} of a faint mask (area {float(area):.3g}, eps {eps:g})",
                 hint="use the eps argument: sum(features * mask) / (sum(mask) + eps).")

    # 4. a soft mask and leading dimensions (episodes x shots)
    features = torch.randn(2, 3, 4, 5, 6, generator=generator)  # B x K x C x H x W
    soft = torch.rand(2, 3, 1, 5, 6, generator=generator)
    soft[1, 2] = 0.0  # one empty shot among them
    got = _call(answer, features.clone(), soft.clone(), eps, what=what, hint=hint)
    expected = masked_average_pooling(features, soft, eps)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{what}: B x K x C x H x W features gave shape {tuple(got.shape)}, expected "
                            f"{tuple(expected.shape)}. Reduce only the last two dimensions (dim=(-2, -1)), so any "
                            "leading dimensions (episodes, shots) pass through.")
    binarised = (soft > 0).float()
    _name_mistake(got, [
        ((features * binarised).sum(dim=(-2, -1)) / (binarised.sum(dim=(-2, -1)) + eps),
         "you thresholded the mask; weight every feature by the soft mask value itself (M_s is in [0, 1])."),
    ], what)
    expect_close(got, expected, what=f"{what} with a soft mask and B x K leading dimensions", hint=hint)
    passed("masked_average_pooling_eps agrees with the library (binary, empty, faint and soft masks; any leading dims)")


# ------------------------------------------------------------------------------------------------- cosine map


def _cosine_reference(query: torch.Tensor, prototype: torch.Tensor, eps: float) -> torch.Tensor:
    return F.cosine_similarity(query, prototype[:, :, None, None], dim=1, eps=eps)[:, None]


def check_cosine_map(answer: Callable[..., Any]) -> None:
    """``answer(query, prototype, eps)``: BxCxHxW and BxC -> Bx1xHxW cosine of every query cell to its prototype."""
    what = "cosine_map"
    generator = torch.Generator().manual_seed(4)
    eps = 1e-7
    hint = ("divide every query cell's C-vector by its norm (over dim 1) and the prototype by its norm, then take the "
            "dot product over the channels; keep a channel of size 1.")
    query = torch.randn(2, 5, 4, 6, generator=generator) + 0.5
    prototype = torch.randn(2, 5, generator=generator)
    got = _call(answer, query.clone(), prototype.clone(), eps, what=what, hint=hint)
    expected = _cosine_reference(query, prototype, eps)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (2, 4, 6):
        raise ExerciseError(f"{what}: shape (2, 4, 6); keep the channel dimension: B x 1 x H x W "
                            "(sum(..., dim=1, keepdim=True), or add [:, None]).")
    _name_mistake(got, [
        ((query * prototype[:, :, None, None]).sum(dim=1, keepdim=True),
         "you took the plain dot product; a cosine divides it by both norms (query cell and prototype)."),
        (((query / query.norm(dim=1, keepdim=True)) * prototype[:, :, None, None]).sum(dim=1, keepdim=True),
         "only the query cells are normalised; divide the prototype by its norm too."),
        ((query * (prototype / prototype.norm(dim=1, keepdim=True))[:, :, None, None]).sum(dim=1, keepdim=True),
         "only the prototype is normalised; divide every query cell by its own norm (over dim 1) too."),
        (_cosine_reference(query, prototype.flip(0), eps),
         "episode b's query must be compared with episode b's prototype: index the prototype as "
         "prototype[:, :, None, None] so it broadcasts over H and W, not over the batch."),
    ], what)
    expect_close(got, expected, what=what, hint=hint)
    zero = torch.zeros_like(prototype)
    got = _call(answer, query.clone(), zero, eps, what=what, hint=hint)
    expect(isinstance(got, torch.Tensor) and not bool(torch.isnan(got).any()),
           f"{what}: a zero prototype (the MAP of an empty mask) gives NaN; add eps to the norms (norm + eps).")
    expect_close(got, torch.zeros_like(expected), what=f"{what} to a zero prototype",
                 hint="a zero prototype must give a cosine of 0 everywhere (norm + eps in the denominator).")
    passed("cosine_map agrees with F.cosine_similarity (shape B x 1 x H x W, zero prototype -> 0)")


# ----------------------------------------------------------------------------------------- PANet's two prototypes


def panet_logits_reference(query: torch.Tensor, support: torch.Tensor, support_masks: torch.Tensor,
                           scale: float = 20.0, map_eps: float = 5e-4, cos_eps: float = 1e-7) -> torch.Tensor:
    """PANet's rule as :class:`dpcn_lite.baselines.PrototypeSegmenter`'s head computes it, with a fixed scale.

    ``query`` BxCxhxw, ``support`` BxKxCxhxw, ``support_masks`` BxKx1xhxw -> Bx2xhxw logits, channel 0 background.
    """
    foreground = masked_average_pooling(support, support_masks, map_eps).mean(dim=1)
    background = masked_average_pooling(support, 1.0 - support_masks, map_eps).mean(dim=1)
    prototypes = F.normalize(torch.stack([background, foreground], dim=1), dim=2, eps=cos_eps)
    return scale * torch.einsum("bchw,bkc->bkhw", F.normalize(query, dim=1, eps=cos_eps), prototypes)


def _cos(query: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
    return _cosine_reference(query, prototype, 1e-7)


def check_panet_logits(answer: Callable[..., Any]) -> None:
    """``answer(query, support, support_masks, scale)`` -> Bx2xhxw = scale * cos(query, [background, foreground])."""
    what = "panet_logits"
    generator = torch.Generator().manual_seed(6)
    scale = 20.0
    hint = ("foreground prototype = MAP(support, M_s), background = MAP(support, 1 - M_s), each averaged over the K "
            "shots (dim 1); logits = scale * [cos(x_q, background), cos(x_q, foreground)] along dim 1.")
    b, k, c, h, w = 2, 3, 6, 5, 7
    query = torch.randn(b, c, h, w, generator=generator)
    support = torch.randn(b, k, c, h, w, generator=generator) + 0.3
    masks = torch.zeros(b, k, 1, h, w)
    masks[:, :, :, 1:4, 2:6] = 1.0
    masks = masks * torch.rand(b, k, 1, h, w, generator=generator)  # soft, like a resized mask
    masks[0, 1] = 0.0  # an empty shot
    expected = panet_logits_reference(query, support, masks, scale)

    # one shot first: channel order, which mask, the scale
    one = _call(answer, query.clone(), support[:, :1].clone(), masks[:, :1].clone(), scale, what=what, hint=hint)
    ref_one = panet_logits_reference(query, support[:, :1], masks[:, :1], scale)
    if isinstance(one, torch.Tensor) and tuple(one.shape) != tuple(ref_one.shape):
        raise ExerciseError(f"{what}: one shot gave shape {tuple(one.shape)}, expected {tuple(ref_one.shape)} "
                            "(B x 2 x h x w: background then foreground, stacked along dim 1).")
    fg1 = masked_average_pooling(support[:, 0], masks[:, 0])
    bg1 = masked_average_pooling(support[:, 0], 1 - masks[:, 0])
    _name_mistake(one, [
        (ref_one.flip(1), "the two channels are swapped: channel 0 is the background, channel 1 the foreground "
                          "(the argmax then predicts 1 where the foreground prototype wins)."),
        (ref_one / scale, "the cosines are not multiplied by the scale (PANet's 20)."),
        (scale * torch.cat([_cos(query, masked_average_pooling(support[:, 0], torch.zeros_like(masks[:, 0]))),
                            _cos(query, fg1)], dim=1),
         "the background prototype is zero: it is MAP over the complement of the mask, 1 - M_s."),
        (scale * torch.cat([_cos(query, fg1), _cos(query, fg1)], dim=1),
         "both channels use the foreground prototype; the background one is MAP(support, 1 - M_s)."),
        (scale * torch.cat([_cos(query, bg1), _cos(query, support[:, 0].mean(dim=(-2, -1)))], dim=1),
         "the foreground prototype ignores the mask; weight the features by M_s (masked average pooling)."),
    ], what)
    expect_close(one, ref_one, what=f"{what}, one shot", hint=hint)

    # K shots: average the prototypes, not the cosines or the logits
    got = _call(answer, query.clone(), support.clone(), masks.clone(), scale, what=what, hint=hint)
    mean_of_cosines = torch.stack([panet_logits_reference(query, support[:, i:i + 1], masks[:, i:i + 1], scale)
                                   for i in range(k)]).mean(dim=0)
    _name_mistake(got, [
        (mean_of_cosines, "with K shots you averaged the per-shot logits; average the K prototypes (over dim 1) "
                          "first, then take one cosine per class, as the library's prototype baseline does."),
    ], what)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{what}: K = {k} shots gave shape {tuple(got.shape)}, expected {tuple(expected.shape)}. "
                            "MAP keeps the shot dimension (B x K x C); average it away with .mean(dim=1).")
    expect_close(got, expected, what=f"{what}, {k} shots (one of them empty)", hint=hint)
    passed("panet_logits agrees with the prototype baseline's head (channel order, both prototypes, scale, K shots)")


# ----------------------------------------------------------------------------------------------- PFENet's prior


def check_cosine_prior(answer: Callable[..., Any]) -> None:
    """``answer(query_high, support_high, support_mask, eps)`` -> Nx1xHqxWq, as the library's ``cosine_prior``."""
    what = "cosine_prior"
    generator = torch.Generator().manual_seed(8)
    eps = 1e-7
    hint = ("mask the support (x_s^h * M_s), L2-normalise every cell of both maps over the channels, take the cosine "
            "of every (support cell, query cell) pair, keep the max over the support cells, then min-max normalise "
            "each query's map on its own: (best - min) / (max - min + eps).")
    n, ch = 3, 8
    query = torch.randn(n, ch, 5, 7, generator=generator)
    support = torch.randn(n, ch, 6, 4, generator=generator)  # a different grid than the query's
    mask = torch.zeros(n, 1, 6, 4)
    mask[:, :, 1:5, 1:3] = 1.0
    mask = mask * (0.5 + 0.5 * torch.rand(n, 1, 6, 4, generator=generator))
    support[:, :, 0] += 3.0  # strong features outside the mask: they must not count
    query = query * torch.tensor([1.0, 4.0, 0.3])[:, None, None, None]  # episodes on different scales
    got = _call(answer, query.clone(), support.clone(), mask.clone(), eps, what=what, hint=hint)
    expected = cosine_prior(query, support, mask, eps)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)} (N x 1 x Hq x Wq: "
                            "one map per query, on the query's grid; the max runs over the support cells).")

    sn = F.normalize(support * mask, dim=1, eps=eps).flatten(2)
    qn = F.normalize(query, dim=1, eps=eps).flatten(2)
    cosine = torch.bmm(sn.transpose(1, 2), qn)  # N x HsWs x HqWq
    shape = (n, 1, 5, 7)
    unmasked = torch.bmm(F.normalize(support, dim=1, eps=eps).flatten(2).transpose(1, 2), qn)
    best = cosine.max(dim=1).values.view(shape)
    normalised_then_masked = torch.bmm((F.normalize(support, dim=1, eps=eps) * mask).flatten(2).transpose(1, 2), qn)
    _name_mistake(got, [
        (minmax_normalize(unmasked.max(dim=1).values.view(shape), eps),
         "the support mask is not applied: multiply x_s^h by M_s before normalising, so cells outside the object "
         "are zero vectors (cosine 0)."),
        (minmax_normalize(normalised_then_masked.max(dim=1).values.view(shape), eps),
         "you normalised, then masked: with a soft mask that scales the cosines by M_s. Mask first, then "
         "normalise (x_s^h * M_s, then divide by the norm)."),
        (minmax_normalize(cosine.mean(dim=1).view(shape), eps),
         "you averaged over the support cells; the prior keeps the BEST match: max over the support cells."),
        ((best - best.min()) / (best.max() - best.min() + eps),
         "the min-max normalisation ran over the whole batch; normalise each query's map on its own "
         "(min and max over that map's H x W cells)."),
        (best, "the map is not min-max normalised: rescale each map to [0, 1] with (best - min) / (max - min + eps)."),
    ], what)
    expect_close(got, expected, what=what, hint=hint)

    empty = torch.zeros_like(mask)
    got = _call(answer, query.clone(), support.clone(), empty, eps, what=what, hint=hint)
    expect(isinstance(got, torch.Tensor) and not bool(torch.isnan(got).any()),
           f"{what}: an empty support mask gives NaN. Add eps to the norms and to the min-max denominator "
           "(max - min + eps): every cosine is 0, so max = min.")
    expect_close(got, torch.zeros_like(expected), what=f"{what} of an empty support mask",
                 hint="an empty mask makes every cosine 0; (0 - 0) / (0 + eps) = 0 everywhere.")
    passed("cosine_prior agrees with the library (masked support, max over support cells, per-map min-max, empty mask)")
