"""Support Activation Module (SAM, paper §3.3, Fig. 3): region-to-region matching of high-level features.

For a window w of size dh x dw, the support region around support pixel s and the query region around query pixel q
are compared offset by offset: Corr_w[s, q] = mean over offsets o in w of cos(x_s^h[s + o], x_q^h[q + o]) (outside the
grid, or outside the support mask, a vector is zero and its cosine is 0). The activation map is
M_act[q] = minmax_q( max_s Corr_w[s, q] ); the initial pseudo mask M_pse^0 is the mean of the maps of all windows.

Three exact ways to compute Corr_w, from clearest to fastest:

* ``loop``: one cosine matrix per offset (shift both maps, multiply), averaged. dh*dw matrix products per window.
* ``unfold``: unfold both normalised maps with the window and take one product of the long region vectors, divided
  by dh*dw. Same cost as the loop, in one call.
* ``shifted`` (default): ONE cosine matrix C[ys, xs, yq, xq] for all windows; Corr_w is the mean of C shifted by the
  same offset along the support and the query axes. One product serves every window, then 5 + 9 + 5 additions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpcn_lite.modules.prototypes import l2_normalize_pixels, minmax_normalize

Window = tuple[int, int]


def window_offsets(window: Window) -> list[tuple[int, int]]:
    """Offsets (oy, ox) covered by a centred dh x dw window, row by row."""
    dh, dw = window
    return [(oy, ox) for oy in range(-(dh // 2), dh // 2 + 1) for ox in range(-(dw // 2), dw // 2 + 1)]


def shift_map(features: torch.Tensor, oy: int, ox: int) -> torch.Tensor:
    """``out[..., y, x] = features[..., y + oy, x + ox]``, zero where that falls outside the grid."""
    height, width = features.shape[-2:]
    py, px = abs(oy), abs(ox)
    padded = F.pad(features, (px, px, py, py))
    return padded[..., py + oy : py + oy + height, px + ox : px + ox + width]


def correlation_loop(support: torch.Tensor, query: torch.Tensor, window: Window) -> torch.Tensor:
    """Reference: per-offset cosine matrices averaged. Inputs are L2-normalised NxChxHxW maps -> N x HsWs x HqWq."""
    total = None
    for oy, ox in window_offsets(window):
        s = shift_map(support, oy, ox).flatten(2)
        q = shift_map(query, oy, ox).flatten(2)
        term = torch.bmm(s.transpose(1, 2), q)
        total = term if total is None else total + term
    return total / (window[0] * window[1])


def correlation_unfold(support: torch.Tensor, query: torch.Tensor, window: Window) -> torch.Tensor:
    """Unfold form: one product of dh*dw*Ch-long region vectors, divided by dh*dw -> N x HsWs x HqWq."""
    padding = (window[0] // 2, window[1] // 2)
    s = F.unfold(support, window, padding=padding)  # N x (Ch*dh*dw) x HsWs
    q = F.unfold(query, window, padding=padding)
    return torch.bmm(s.transpose(1, 2), q) / (window[0] * window[1])


def _valid_range(offset: int, support_size: int, query_size: int) -> tuple[int, int, int, int]:
    """Positions whose shifted partner stays on the grid: support [s0, s1) and query [q0, q1) for one axis."""
    low = max(0, -offset)
    return low, min(support_size, support_size - offset), low, min(query_size, query_size - offset)


def correlation_shifted(cosine: torch.Tensor, window: Window, support_hw: tuple[int, int],
                        query_hw: tuple[int, int]) -> torch.Tensor:
    """Fast form: mean of the cosine matrix shifted along both axes. ``cosine`` N x HsWs x HqWq -> same shape.

    Corr_w[ys, xs, yq, xq] = mean over (oy, ox) in w of C[ys + oy, xs + ox, yq + oy, xq + ox] (0 off the grid).
    Each offset adds the part of C that stays on the grid, in place, into one accumulator.
    """
    n = cosine.shape[0]
    (hs, ws), (hq, wq) = support_hw, query_hw
    grid = cosine.view(n, hs, ws, hq, wq)
    total = grid.clone()  # the centre offset (0, 0)
    for oy, ox in window_offsets(window):
        if oy == 0 and ox == 0:
            continue
        ys0, ys1, yq0, yq1 = _valid_range(oy, hs, hq)
        xs0, xs1, xq0, xq1 = _valid_range(ox, ws, wq)
        total[:, ys0:ys1, xs0:xs1, yq0:yq1, xq0:xq1] += grid[
            :, ys0 + oy : ys1 + oy, xs0 + ox : xs1 + ox, yq0 + oy : yq1 + oy, xq0 + ox : xq1 + ox
        ]
    return total.div_(window[0] * window[1]).view(n, hs * ws, hq * wq)


def activation_maps(
    query_high: torch.Tensor,
    support_high: torch.Tensor,
    support_mask: torch.Tensor,
    windows: tuple[Window, ...] = ((5, 1), (3, 3), (1, 5)),
    method: str = "shifted",
    eps: float = 1e-7,
) -> torch.Tensor:
    """One activation map per window. ``query_high`` NxChxHqxWq, ``support_high`` NxChxHsxWs, mask Nx1xHsxWs.

    Returns N x len(windows) x Hq x Wq, each map min-max normalised to [0, 1].
    """
    support = l2_normalize_pixels(support_high * support_mask, eps)
    query = l2_normalize_pixels(query_high, eps)
    n, _, hq, wq = query.shape
    cosine = None
    if method == "shifted":
        cosine = torch.bmm(support.flatten(2).transpose(1, 2), query.flatten(2))
    maps = []
    for window in windows:
        if method == "shifted":
            corr = correlation_shifted(cosine, window, tuple(support.shape[-2:]), (hq, wq))
        elif method == "unfold":
            corr = correlation_unfold(support, query, window)
        elif method == "loop":
            corr = correlation_loop(support, query, window)
        else:
            raise ValueError(f"Unknown SAM method {method!r}; choose 'shifted', 'unfold' or 'loop'.")
        best = corr.max(dim=1).values.view(n, hq, wq)  # best-matching support region for each query region
        maps.append(minmax_normalize(best, eps))
    return torch.stack(maps, dim=1)


class SupportActivationModule(nn.Module):
    """SAM for a K-shot episode: activation maps per shot, averaged over shots; M_pse^0 = mean over windows.

    No learnable parameters (the paper's SAM is parameter-free); gradients flow into the high-level features.
    """

    def __init__(self, windows: tuple[Window, ...] = ((5, 1), (3, 3), (1, 5)), method: str = "shifted",
                 eps: float = 1e-7) -> None:
        super().__init__()
        self.windows = tuple(tuple(w) for w in windows)
        self.method = method
        self.eps = eps

    def forward(
        self, query_high: torch.Tensor, support_high: torch.Tensor, support_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query_high`` BxChxhxw, ``support_high`` BxKxChxhxw, ``support_masks`` BxKx1xhxw (soft).

        Returns (activation maps BxWxhxw, initial pseudo mask Bx1xhxw).
        """
        b, k = support_high.shape[:2]
        query = query_high.repeat_interleave(k, dim=0)  # pair every shot with its own query copy
        maps = activation_maps(query, support_high.flatten(0, 1), support_masks.flatten(0, 1), self.windows,
                               self.method, self.eps)
        maps = maps.view(b, k, *maps.shape[1:]).mean(dim=1)
        return maps, maps.mean(dim=1, keepdim=True)

    def extra_repr(self) -> str:
        return f"windows={self.windows}, method={self.method!r}"
