"""SAM: the three exact formulations agree with each other and with the definition; maps and pseudo mask."""

from __future__ import annotations

import pytest
import torch

from dpcn_lite.modules.prototypes import cosine_prior
from dpcn_lite.modules.sam import SupportActivationModule, activation_maps

WINDOWS = ((5, 1), (3, 3), (1, 5))
# float64 inputs: the formulations differ only by summation order, so they agree to ~1e-12.
TOLERANCE = 1e-10


def _definition(query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, window: tuple[int, int]):
    """The paper read literally, with Python loops: for every support/query region pair, the mean over the
    window offsets of the per-offset cosine (zero vectors outside the grid or mask), max over support, min-max."""
    ch, hs, ws = support.shape
    _, hq, wq = query.shape
    masked = support * mask

    def vector(x: torch.Tensor, y: int, xx: int) -> torch.Tensor:
        if 0 <= y < x.shape[1] and 0 <= xx < x.shape[2]:
            return x[:, y, xx]
        return torch.zeros(ch, dtype=x.dtype)

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        na, nb = a.norm(), b.norm()
        return float(a @ b / ((na + 1e-7) * (nb + 1e-7)))

    dh, dw = window
    offsets = [(oy, ox) for oy in range(-(dh // 2), dh // 2 + 1) for ox in range(-(dw // 2), dw // 2 + 1)]
    best = torch.full((hq, wq), -float("inf"), dtype=torch.float64)
    for yq in range(hq):
        for xq in range(wq):
            for ys in range(hs):
                for xs in range(ws):
                    corr = sum(cos(vector(masked, ys + oy, xs + ox), vector(query, yq + oy, xq + ox))
                               for oy, ox in offsets) / len(offsets)
                    best[yq, xq] = max(best[yq, xq], corr)
    return (best - best.min()) / (best.max() - best.min() + 1e-7)


@pytest.fixture()
def small_maps():
    torch.manual_seed(0)
    query = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    support = torch.randn(2, 6, 5, 4, dtype=torch.float64)  # support and query grids may differ
    mask = (torch.rand(2, 1, 5, 4, dtype=torch.float64) > 0.4).double()
    return query, support, mask


def test_fast_formulation_equals_the_definition(small_maps) -> None:
    query, support, mask = small_maps
    fast = activation_maps(query, support, mask, WINDOWS, method="shifted")
    for b in range(2):
        for i, window in enumerate(WINDOWS):
            expected = _definition(query[b], support[b], mask[b], window)
            assert torch.allclose(fast[b, i], expected, atol=TOLERANCE), (b, window)


@pytest.mark.parametrize("method", ["unfold", "loop"])
def test_fast_formulation_equals_unfold_and_per_offset_loop(method: str) -> None:
    torch.manual_seed(1)
    query = torch.randn(3, 16, 9, 7, dtype=torch.float64)
    support = torch.randn(3, 16, 9, 7, dtype=torch.float64)
    mask = torch.rand(3, 1, 9, 7, dtype=torch.float64)  # soft mask
    windows = WINDOWS + ((1, 1), (3, 5))
    fast = activation_maps(query, support, mask, windows, method="shifted")
    other = activation_maps(query, support, mask, windows, method=method)
    assert torch.allclose(fast, other, atol=TOLERANCE)


def test_float32_agreement_tolerance() -> None:
    """In float32 (what the model runs) the formulations agree to 1e-5 after min-max normalisation."""
    torch.manual_seed(2)
    query, support = torch.randn(1, 64, 12, 12), torch.randn(1, 64, 12, 12)
    mask = (torch.rand(1, 1, 12, 12) > 0.5).float()
    fast = activation_maps(query, support, mask, WINDOWS, method="shifted")
    assert (fast - activation_maps(query, support, mask, WINDOWS, method="loop")).abs().max() < 1e-5
    assert (fast - activation_maps(query, support, mask, WINDOWS, method="unfold")).abs().max() < 1e-5


def test_a_1x1_window_is_the_pfenet_cosine_prior(small_maps) -> None:
    query, support, mask = small_maps
    sam = activation_maps(query, support, mask, ((1, 1),))
    assert torch.allclose(sam, cosine_prior(query, support, mask), atol=TOLERANCE)


def test_maps_are_normalised_and_highlight_the_matching_region() -> None:
    torch.manual_seed(3)
    background = torch.randn(1, 8, 10, 10) * 0.1
    support = background.clone()
    query = background.flip(-1).clone()
    pattern = torch.randn(8, 1, 1) * 3
    support[0, :, 2:6, 2:6] += pattern
    query[0, :, 5:9, 4:8] += pattern
    mask = torch.zeros(1, 1, 10, 10)
    mask[..., 2:6, 2:6] = 1
    maps = activation_maps(query, support, mask, WINDOWS)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    inside = maps[0, :, 5:9, 4:8].mean()
    outside = maps[0, :, :4, :].mean()
    assert inside > outside + 0.3


def test_module_averages_shots_and_takes_the_mean_as_pseudo_mask() -> None:
    torch.manual_seed(4)
    query = torch.randn(2, 8, 6, 6)
    support = torch.randn(2, 3, 8, 6, 6)
    masks = torch.rand(2, 3, 1, 6, 6)
    maps, pseudo = SupportActivationModule(WINDOWS)(query, support, masks)
    assert maps.shape == (2, 3, 6, 6) and pseudo.shape == (2, 1, 6, 6)
    per_shot = torch.stack([activation_maps(query, support[:, k], masks[:, k], WINDOWS) for k in range(3)], 1)
    assert torch.allclose(maps, per_shot.mean(1), atol=1e-6)
    assert torch.allclose(pseudo, maps.mean(1, keepdim=True))


def test_empty_support_mask_gives_zero_maps_without_nan() -> None:
    maps = activation_maps(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6), torch.zeros(1, 1, 6, 6), WINDOWS)
    assert torch.isfinite(maps).all() and maps.abs().max() == 0


def test_gradients_flow_through_every_formulation() -> None:
    for method in ("shifted", "unfold", "loop"):
        query = torch.randn(1, 4, 5, 5, requires_grad=True)
        support = torch.randn(1, 4, 5, 5, requires_grad=True)
        activation_maps(query, support, torch.ones(1, 1, 5, 5), WINDOWS, method=method).sum().backward()
        assert query.grad.abs().sum() > 0 and support.grad.abs().sum() > 0


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="shifted"):
        activation_maps(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3), torch.ones(1, 1, 3, 3), method="fft")
