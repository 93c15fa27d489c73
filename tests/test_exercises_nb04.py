"""Notebook 04's exercise checks pass the library's answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.exercises import ExerciseError, nb04
from dpcn_lite.modules.prototypes import l2_normalize_pixels, minmax_normalize
from dpcn_lite.modules.sam import activation_maps, correlation_loop, correlation_shifted, correlation_unfold


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- form 2: unfold ---------------------------------------------------------------------------------------------------


def unfold_swapped_padding(support, query, window):
    padding = (window[1] // 2, window[0] // 2)
    s = F.unfold(support, window, padding=padding)
    q = F.unfold(query, window, padding=padding)
    return torch.bmm(s.transpose(1, 2), q) / (window[0] * window[1])


def unfold_sum(support, query, window):
    return correlation_unfold(support, query, window) * window[0] * window[1]


def unfold_transposed(support, query, window):
    return correlation_unfold(support, query, window).transpose(1, 2)


@pytest.mark.parametrize("answer", [correlation_unfold, correlation_loop])
def test_unfold_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb04.check_correlation_unfold(answer)
    assert capsys.readouterr().out.startswith("✓ correlation_unfold equals")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (unfold_swapped_padding, "pad by \\(dh // 2, dw // 2\\)"),
    (unfold_sum, "MEAN"),
    (unfold_transposed, "query x support"),
])
def test_unfold_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb04.check_correlation_unfold(answer)


# --- form 3: shifted ----------------------------------------------------------------------------------------------------


def shifted_padded(cosine, window, support_hw, query_hw):
    """The notebook's solution: pad C on all four axes, add one slice per offset."""
    n = cosine.shape[0]
    (hs, ws), (hq, wq) = support_hw, query_hw
    py, px = window[0] // 2, window[1] // 2
    grid = F.pad(cosine.view(n, hs, ws, hq, wq), (px, px, py, py, px, px, py, py))
    total = 0
    for oy in range(-py, py + 1):
        for ox in range(-px, px + 1):
            total = total + grid[:, py + oy:py + oy + hs, px + ox:px + ox + ws, py + oy:py + oy + hq, px + ox:px + ox + wq]
    return (total / (window[0] * window[1])).reshape(n, hs * ws, hq * wq)


def shifted_sum(cosine, window, support_hw, query_hw):
    return correlation_shifted(cosine, window, support_hw, query_hw) * window[0] * window[1]


def shifted_query_only(cosine, window, support_hw, query_hw):
    return nb04._shift_query_only(cosine, window, support_hw, query_hw)


def shifted_swapped_axes(cosine, window, support_hw, query_hw):
    return correlation_shifted(cosine, window, support_hw[::-1], query_hw[::-1])


@pytest.mark.parametrize("answer", [correlation_shifted, shifted_padded])
def test_shifted_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb04.check_correlation_shifted(answer)
    assert capsys.readouterr().out.startswith("✓ correlation_shifted equals")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (shifted_sum, "MEAN"),
    (shifted_query_only, "only the query axes are shifted"),
    (shifted_swapped_axes, "values differ"),
])
def test_shifted_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb04.check_correlation_shifted(answer)


# --- activation maps and M_pse^0 -------------------------------------------------------------------------------------


def maps_right(correlations, query_hw, eps=1e-7):
    n = correlations[0].shape[0]
    maps = torch.stack([minmax_normalize(c.max(dim=1).values.view(n, *query_hw), eps) for c in correlations], dim=1)
    return maps, maps.mean(dim=1, keepdim=True)


def maps_query_axis(correlations, query_hw, eps=1e-7):
    n = correlations[0].shape[0]
    maps = torch.stack([minmax_normalize(c.max(dim=2).values, eps) for c in correlations], dim=1)
    return maps, maps.mean(dim=1, keepdim=True)


def maps_joint_minmax(correlations, query_hw, eps=1e-7):
    n = correlations[0].shape[0]
    best = torch.stack([c.max(dim=1).values.view(n, *query_hw) for c in correlations], dim=1)
    low, high = best.amin(dim=(1, 2, 3), keepdim=True), best.amax(dim=(1, 2, 3), keepdim=True)
    maps = (best - low) / (high - low + eps)
    return maps, maps.mean(dim=1, keepdim=True)


def maps_no_eps(correlations, query_hw, eps=1e-7):
    n = correlations[0].shape[0]
    best = torch.stack([c.max(dim=1).values.view(n, *query_hw) for c in correlations], dim=1)
    low, high = best.amin(dim=(2, 3), keepdim=True), best.amax(dim=(2, 3), keepdim=True)
    maps = (best - low) / (high - low)
    return maps, maps.mean(dim=1, keepdim=True)


def maps_pseudo_max(correlations, query_hw, eps=1e-7):
    maps, _ = maps_right(correlations, query_hw, eps)
    return maps, maps.amax(dim=1, keepdim=True)


def maps_pseudo_squeezed(correlations, query_hw, eps=1e-7):
    maps, _ = maps_right(correlations, query_hw, eps)
    return maps, maps.mean(dim=1)


def test_sam_maps_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb04.check_sam_maps(maps_right)
    assert capsys.readouterr().out.startswith("✓ sam_maps")


def test_sam_maps_reference_is_the_librarys_activation_maps() -> None:
    generator = torch.Generator().manual_seed(1)
    query, support = torch.randn(2, 5, 4, 6, generator=generator), torch.randn(2, 5, 5, 3, generator=generator)
    mask = torch.rand(2, 1, 5, 3, generator=generator)
    windows = ((5, 1), (3, 3), (1, 5))
    s, q = l2_normalize_pixels(support * mask), l2_normalize_pixels(query)
    maps, pseudo = maps_right([correlation_loop(s, q, w) for w in windows], (4, 6))
    torch.testing.assert_close(maps, activation_maps(query, support, mask, windows))
    torch.testing.assert_close(pseudo, activation_maps(query, support, mask, windows).mean(dim=1, keepdim=True))


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (maps_query_axis, "SUPPORT positions"),
    (maps_joint_minmax, "all windows of an episode together"),
    (maps_no_eps, "NaN"),
    (maps_pseudo_max, "MEAN of the windows"),
    (maps_pseudo_squeezed, "keepdim"),
    (lambda correlations, query_hw, eps=1e-7: maps_right(correlations, query_hw, eps)[0], "two tensors"),
])
def test_sam_maps_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb04.check_sam_maps(answer)


# --- SAM for any windows ------------------------------------------------------------------------------------------------


def any_right(query_high, support_high, support_mask, windows):
    s = l2_normalize_pixels(support_high * support_mask)
    q = l2_normalize_pixels(query_high)
    n, _, hq, wq = q.shape
    c = torch.bmm(s.flatten(2).transpose(1, 2), q.flatten(2))
    return torch.stack([minmax_normalize(correlation_shifted(c, w, tuple(s.shape[-2:]), (hq, wq)).max(dim=1).values
                                         .view(n, hq, wq)) for w in windows], dim=1)


def any_unmasked(query_high, support_high, support_mask, windows):
    return any_right(query_high, support_high, torch.ones_like(support_mask), windows)


def any_normalise_then_mask(query_high, support_high, support_mask, windows):
    s = l2_normalize_pixels(support_high) * support_mask
    q = l2_normalize_pixels(query_high)
    n, _, hq, wq = q.shape
    c = torch.bmm(s.flatten(2).transpose(1, 2), q.flatten(2))
    return torch.stack([minmax_normalize(correlation_shifted(c, w, tuple(s.shape[-2:]), (hq, wq)).max(dim=1).values
                                         .view(n, hq, wq)) for w in windows], dim=1)


def any_mean_over_support(query_high, support_high, support_mask, windows):
    s = l2_normalize_pixels(support_high * support_mask)
    q = l2_normalize_pixels(query_high)
    n, _, hq, wq = q.shape
    c = torch.bmm(s.flatten(2).transpose(1, 2), q.flatten(2))
    return torch.stack([minmax_normalize(correlation_shifted(c, w, tuple(s.shape[-2:]), (hq, wq)).mean(dim=1)
                                         .view(n, hq, wq)) for w in windows], dim=1)


@pytest.mark.parametrize("answer", [any_right, activation_maps])
def test_any_windows_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb04.check_activation_maps_any(answer)
    assert capsys.readouterr().out.startswith("✓ activation_maps_any agrees")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (any_unmasked, "mask is not applied"),
    (any_normalise_then_mask, "normalised, then masked"),
    (any_mean_over_support, "1x1 window"),
])
def test_any_windows_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb04.check_activation_maps_any(answer)
