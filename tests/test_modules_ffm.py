"""The Feature Filtering Module (paper §3.4): the refined pseudo mask and the residual gate, equation by equation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.modules.ffm import FeatureFilteringModule


def inputs(b: int = 2, c: int = 4, hw: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, hw, hw, generator=g), torch.randn(b, c, generator=g), torch.rand(b, 1, hw, hw, generator=g)


def test_refined_mask_follows_the_equation() -> None:
    ffm = FeatureFilteringModule(4, kernel_size=3)
    query, prototype, pseudo = inputs()
    _, refined = ffm(query, prototype, pseudo)
    # M_pse^r = sigmoid(conv(x_q * M_pse^0 + x_p)), x_p = p expanded over the grid
    expected = torch.sigmoid(F.conv2d(query * pseudo + prototype[:, :, None, None], ffm.mask_conv.weight,
                                      ffm.mask_conv.bias, padding=1))
    assert torch.allclose(refined, expected, atol=1e-6)


def test_filtering_is_a_residual_gate_that_damps_but_never_zeroes() -> None:
    ffm = FeatureFilteringModule(4)
    query, prototype, pseudo = inputs()
    filtered, refined = ffm(query, prototype, pseudo)
    assert refined.shape == (2, 1, 5, 5) and (refined > 0).all() and (refined < 1).all()
    assert torch.allclose(filtered, query * refined + query)
    ratio = filtered / query
    assert (ratio > 1).all() and (ratio < 2).all()  # x~_q lies between x_q and 2 x_q


def test_the_pseudo_mask_and_the_prototype_decide_the_gate() -> None:
    ffm = FeatureFilteringModule(4)
    query, prototype, pseudo = inputs()
    _, refined = ffm(query, prototype, pseudo)
    _, other_mask = ffm(query, prototype, 1.0 - pseudo)
    _, other_prototype = ffm(query, -prototype, pseudo)
    assert not torch.allclose(refined, other_mask) and not torch.allclose(refined, other_prototype)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_any_odd_kernel_keeps_the_grid_and_gradients_reach_the_conv(kernel_size: int) -> None:
    ffm = FeatureFilteringModule(4, kernel_size=kernel_size)
    query, prototype, pseudo = inputs(hw=7)
    filtered, refined = ffm(query, prototype, pseudo)
    assert filtered.shape == query.shape and refined.shape == (2, 1, 7, 7)
    filtered.sum().backward()
    assert ffm.mask_conv.weight.grad is not None and ffm.mask_conv.weight.grad.abs().sum() > 0
