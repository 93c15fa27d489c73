"""Checks for notebook 04 (SAM): the unfold and shifted forms of Corr_w, the activation maps and M_pse^0, SAM for any
windows.

Each check runs the learner's function on small seeded inputs whose support and query grids differ in size and are
not square (so a swapped axis or a wrong padding shows), compares it with the library (:mod:`dpcn_lite.modules.sam`)
or with the per-offset definition, prints one ``✓`` line when it agrees and raises
:class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not. Where a usual mistake gives a recognisable
answer, the message names that mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from dpcn_lite.exercises import (call_answer as _call, ExerciseError, expect, expect_close,
                                  name_mistake as _name_mistake, passed)
from dpcn_lite.modules.prototypes import cosine_prior, l2_normalize_pixels, minmax_normalize
from dpcn_lite.modules.sam import activation_maps, correlation_loop, correlation_shifted

__all__ = ["check_activation_maps_any", "check_correlation_shifted", "check_correlation_unfold", "check_sam_maps"]

WINDOWS = ((5, 1), (1, 5), (3, 3), (1, 1), (3, 5))
SUPPORT_HW = (6, 5)
QUERY_HW = (5, 7)


def _pair(channels: int = 6, n: int = 2, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised support (masked: some zero vectors) and query maps on different, non-square grids."""
    generator = torch.Generator().manual_seed(seed)
    support = torch.randn(n, channels, *SUPPORT_HW, generator=generator)
    mask = torch.zeros(n, 1, *SUPPORT_HW)
    mask[:, :, 1:5, 1:4] = 1.0
    query = torch.randn(n, channels, *QUERY_HW, generator=generator)
    return l2_normalize_pixels(support * mask), l2_normalize_pixels(query)


def _name(window: Sequence[int]) -> str:
    return f"{window[0]}x{window[1]}"


# ------------------------------------------------------------------------------------------------- form 2: unfold


def check_correlation_unfold(answer: Callable[..., Any]) -> None:
    """``answer(support, query, window)``: Corr_w as N x HsWs x HqWq from one product of unfolded region vectors."""
    what = "correlation_unfold"
    support, query = _pair()
    hint = ("F.unfold(x, window, padding=(dh // 2, dw // 2)) gives N x (Ch*dh*dw) x positions for both maps; "
            "Corr_w = bmm(support_columns.transpose(1, 2), query_columns) / (dh * dw).")
    for window in WINDOWS:
        dh, dw = window
        label = f"{what}, window {_name(window)}"
        got = _call(answer, support.clone(), query.clone(), window, what=label, hint=hint)
        expected = correlation_loop(support, query, window)
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            hs, ws = SUPPORT_HW
            hq, wq = QUERY_HW
            if tuple(got.shape) == (expected.shape[0], hq * wq, hs * ws):
                raise ExerciseError(f"{label}: shape {tuple(got.shape)} is query x support; rows must be the support "
                                    "positions: bmm(support_columns.transpose(1, 2), query_columns).")
            raise ExerciseError(f"{label}: shape {tuple(got.shape)}, expected {tuple(expected.shape)} "
                                f"(N x HsWs x HqWq). "
                                "The window is (dh, dw) = (height, width): pad by (dh // 2, dw // 2) so that every "
                                "position keeps its own column (stride 1).")
        if dh * dw > 1:
            _name_mistake(got, [
                (expected * dh * dw, "you summed over the offsets; Corr_w is their MEAN: divide by dh * dw."),
            ], label)
        expect_close(got, expected, what=label, hint=hint)
    passed(f"correlation_unfold equals the per-offset definition for windows {', '.join(map(_name, WINDOWS))}")


# ---------------------------------------------------------------------------------------- form 3: shifted cosines


def _shift_query_only(cosine: torch.Tensor, window, support_hw, query_hw) -> torch.Tensor:
    """A usual mistake: the query axes shifted, the support axes not (Corr[s, q] = mean_o C[s, q + o])."""
    n = cosine.shape[0]
    (hs, ws), (hq, wq) = support_hw, query_hw
    grid = cosine.view(n, hs * ws, hq, wq)
    py, px = window[0] // 2, window[1] // 2
    padded = torch.nn.functional.pad(grid, (px, px, py, py))
    total = sum(padded[..., py + oy: py + oy + hq, px + ox: px + ox + wq]
                for oy in range(-py, py + 1) for ox in range(-px, px + 1))
    return (total / (window[0] * window[1])).reshape(n, hs * ws, hq * wq)


def check_correlation_shifted(answer: Callable[..., Any]) -> None:
    """``answer(cosine, window, support_hw, query_hw)``: Corr_w from ONE cosine matrix, as the library's
    :func:`~dpcn_lite.modules.sam.correlation_shifted` (and the per-offset definition)."""
    what = "correlation_shifted"
    support, query = _pair(seed=12)
    cosine = torch.bmm(support.flatten(2).transpose(1, 2), query.flatten(2))  # N x HsWs x HqWq
    hint = ("view C as N x Hs x Ws x Hq x Wq; for every offset (oy, ox) add C[ys + oy, xs + ox, yq + oy, xq + ox] "
            "(the SAME offset on the support and the query axes, 0 where an index leaves its grid), then divide by "
            "dh * dw.")
    for window in WINDOWS:
        dh, dw = window
        label = f"{what}, window {_name(window)}"
        got = _call(answer, cosine.clone(), window, SUPPORT_HW, QUERY_HW, what=label, hint=hint)
        expected = correlation_loop(support, query, window)
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            raise ExerciseError(f"{label}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}; return the "
                                "same N x HsWs x HqWq layout as the cosine matrix you were given.")
        if dh * dw > 1:
            _name_mistake(got, [
                (expected * dh * dw, "you summed the shifted copies; Corr_w is their MEAN: divide by dh * dw."),
                (_shift_query_only(cosine, window, SUPPORT_HW, QUERY_HW),
                 "only the query axes are shifted; shift the support axes by the same offset too (region vs region, "
                 "offset by offset)."),
            ], label)
        expect_close(got, expected, what=label, hint=hint + " The grids are not square: Hs, Ws, Hq, Wq all differ.")
    passed(f"correlation_shifted equals the per-offset definition for windows {', '.join(map(_name, WINDOWS))}")


# ------------------------------------------------------------------------------------- activation maps and M_pse^0


def _maps_reference(correlations: Sequence[torch.Tensor], query_hw, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = correlations[0].shape[0]
    maps = torch.stack([minmax_normalize(c.max(dim=1).values.view(n, *query_hw), eps) for c in correlations], dim=1)
    return maps, maps.mean(dim=1, keepdim=True)


def check_sam_maps(answer: Callable[..., Any]) -> None:
    """``answer(correlations, query_hw, eps)`` with one N x HsWs x HqWq Corr_w per window -> (M_act N x W x Hq x Wq,
    M_pse^0 N x 1 x Hq x Wq)."""
    what = "sam_maps"
    windows = ((5, 1), (3, 3), (1, 5))
    support, query = _pair(n=3, seed=13)
    support[2] = 0.0  # an empty support mask: every correlation is 0
    correlations = [correlation_loop(support, query, window) for window in windows]
    correlations[1][1] *= 3.0  # one map on a larger scale than the others: a joint min-max would show
    eps = 1e-7
    hint = ("for each window: best = Corr_w.max(dim=1) (the best support region of each query region), viewed as "
            "N x Hq x Wq, min-max normalised per map with eps; stack the maps along dim 1; M_pse^0 = their mean.")
    got = _call(answer, [c.clone() for c in correlations], QUERY_HW, eps, what=what, hint=hint)
    expect(isinstance(got, tuple | list) and len(got) == 2, f"{what}: return two tensors, (M_act, M_pse^0).")
    maps, pseudo = got
    maps_ref, pseudo_ref = _maps_reference(correlations, QUERY_HW, eps)
    if isinstance(maps, torch.Tensor) and tuple(maps.shape) != tuple(maps_ref.shape):
        raise ExerciseError(f"{what}, M_act: shape {tuple(maps.shape)}, expected {tuple(maps_ref.shape)} "
                            "(N x windows x Hq x Wq). Take the max over dim 1, the SUPPORT positions, so that one "
                            "value per query position is left, then .view(N, Hq, Wq).")
    n = correlations[0].shape[0]
    best = torch.stack([c.max(dim=1).values.view(n, *QUERY_HW) for c in correlations], dim=1)
    mean_best = torch.stack([c.mean(dim=1).view(n, *QUERY_HW) for c in correlations], dim=1)
    expect(isinstance(maps, torch.Tensor) and not bool(torch.isnan(maps).any()),
           f"{what}, M_act: NaN where the support mask is empty (every Corr_w is 0, so max = min). Add eps to the "
           "min-max denominator: (best - min) / (max - min + eps).")
    _name_mistake(maps, [
        ((best - best.amin(dim=(1, 2, 3), keepdim=True)) / (best.amax(dim=(1, 2, 3), keepdim=True)
                                                             - best.amin(dim=(1, 2, 3), keepdim=True) + eps),
         "the min-max ran over all windows of an episode together; normalise each window's map on its own."),
        ((best - best.min()) / (best.max() - best.min() + eps),
         "the min-max ran over the whole batch; normalise each map (one episode, one window) on its own."),
        (best, "the maps are not min-max normalised to [0, 1]."),
        (minmax_normalize(mean_best, eps), "you averaged over the support positions; keep the BEST support region: "
                                            "max over dim 1."),
    ], f"{what}, M_act")
    expect_close(maps, maps_ref, what=f"{what}, M_act", hint=hint)
    if isinstance(pseudo, torch.Tensor) and tuple(pseudo.shape) == (n, *QUERY_HW):
        raise ExerciseError(f"{what}, M_pse^0: shape {tuple(pseudo.shape)}; keep the channel: "
                            "mean(dim=1, keepdim=True).")
    _name_mistake(pseudo, [
        (maps_ref.amax(dim=1, keepdim=True), "M_pse^0 is the MEAN of the windows' maps, not their max."),
        (minmax_normalize(maps_ref.mean(dim=1, keepdim=True), eps),
         "M_pse^0 is the plain mean of the (already normalised) maps; do not min-max it again."),
    ], f"{what}, M_pse^0")
    expect_close(pseudo, pseudo_ref, what=f"{what}, M_pse^0", hint="M_pse^0 = M_act.mean(dim=1, keepdim=True).")
    passed("sam_maps: M_act (max over support, min-max per map) and M_pse^0 (mean over windows) agree with the library")


# ------------------------------------------------------------------------------------------ SAM for any windows


def check_activation_maps_any(answer: Callable[..., Any]) -> None:
    """``answer(query_high, support_high, support_mask, windows)`` -> N x len(windows) x Hq x Wq, as the library's
    :func:`~dpcn_lite.modules.sam.activation_maps`; a 1 x 1 window must be PFENet's prior."""
    what = "activation_maps_any"
    generator = torch.Generator().manual_seed(14)
    n, ch = 2, 8
    query = torch.randn(n, ch, *QUERY_HW, generator=generator)
    support = torch.randn(n, ch, *SUPPORT_HW, generator=generator)
    mask = torch.zeros(n, 1, *SUPPORT_HW)
    mask[:, :, 1:5, 1:4] = 0.3 + 0.7 * torch.rand(n, 1, 4, 3, generator=generator)  # soft, like a resized mask
    support[:, :, 0] += 2.0  # strong features outside the mask
    windows = ((5, 5), (1, 1), (3, 3), (1, 3))
    hint = ("normalise(x_s^h * M_s) and normalise(x_q^h), ONE cosine matrix C = bmm(s^T, q), then for each window "
            "correlation_shifted(C, ...), max over the support axis, minmax_normalize; stack along dim 1.")
    got = _call(answer, query.clone(), support.clone(), mask.clone(), windows, what=what, hint=hint)
    expected = activation_maps(query, support, mask, windows)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)} "
                            "(N x len(windows) x Hq x Wq, maps stacked along dim 1).")
    unmasked = activation_maps(query, support, torch.ones_like(mask), windows)
    s_then = l2_normalize_pixels(support) * mask
    q = l2_normalize_pixels(query)
    c = torch.bmm(s_then.flatten(2).transpose(1, 2), q.flatten(2))
    wrong_order = torch.stack([minmax_normalize(correlation_shifted(c, w, SUPPORT_HW, QUERY_HW).max(dim=1).values
                                                .view(n, *QUERY_HW)) for w in windows], dim=1)
    _name_mistake(got, [
        (unmasked, "the support mask is not applied: use x_s^h * M_s, so cells outside the object are zero vectors."),
        (wrong_order, "you normalised, then masked: with a soft mask that scales the cosines by M_s. Mask first "
                      "(x_s^h * M_s), then normalise every cell to unit length."),
    ], what)
    expect_close(got[:, 1:2] if isinstance(got, torch.Tensor) else got, cosine_prior(query, support, mask),
                 what=f"{what}, the 1x1 window", hint="a 1 x 1 window has one offset, (0, 0): Corr_1x1 is the cosine "
                                                      "matrix C itself, so its map is PFENet's prior. " + hint)
    expect_close(got, expected, what=what, hint=hint)
    passed(f"activation_maps_any agrees with the library for windows {', '.join(map(_name, windows))} "
           "(and 1x1 is PFENet's prior)")
