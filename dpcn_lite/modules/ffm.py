"""Feature Filtering Module (FFM, paper §3.4): refine the pseudo mask and damp the query background.

    M_pse^r = sigmoid( Conv2d( x_q * M_pse^0 + x_p ) )      (C -> 1 channels; 3x3 is our choice, see choices.md)
    x~_q    = x_q * M_pse^r + x_q                           (residual gating: background damped, never zeroed)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dpcn_lite.modules.prototypes import expand_prototype


class FeatureFilteringModule(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.mask_conv = nn.Conv2d(channels, 1, kernel_size, padding=kernel_size // 2)

    def forward(
        self, query: torch.Tensor, prototype: torch.Tensor, pseudo_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` x_q BxCxhxw, ``prototype`` p BxC, ``pseudo_mask`` M_pse^0 Bx1xhxw.

        Returns (filtered query x~_q BxCxhxw, refined pseudo mask M_pse^r Bx1xhxw).
        """
        expanded = expand_prototype(prototype, tuple(query.shape[-2:]))
        refined = torch.sigmoid(self.mask_conv(query * pseudo_mask + expanded))
        return query * refined + query, refined
