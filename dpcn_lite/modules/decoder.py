"""Fusion decoder (paper Eq. 9-10): F_cls( F_ASPP( F_conv(x_out) ) ), instantiated like BAM's meta-learner head.

    F_conv  1x1 (in -> C, no bias) + ReLU
    F_ASPP  [global pool -> 1x1, 1x1, 3x3 dilated by each rate] each + ReLU, concatenated -> 1x1 -> C + ReLU,
            then a residual block x + (3x3 + ReLU + 3x3 + ReLU)(x)
    F_cls   3x3 + ReLU + Dropout2d(0.1) + 1x1 -> 2 logits (background, foreground)

The paper gives only the three names; every layer here is an assumption recorded in docs/choices.md. The dilation
rates are a config choice: 6/12/18 suit 60x60 maps, small maps need smaller rates.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_relu(cin: int, cout: int, kernel_size: int = 1, dilation: int = 1, bias: bool = True) -> nn.Sequential:
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, padding=padding, dilation=dilation, bias=bias),
                         nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a global branch, a 1x1 branch and one 3x3 branch per dilation rate."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.global_branch = conv_relu(channels, channels)
        self.point_branch = conv_relu(channels, channels)
        self.dilated_branches = nn.ModuleList(conv_relu(channels, channels, 3, d) for d in dilations)
        self.project = conv_relu(channels * (2 + len(dilations)), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_branch(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *x.shape[-2:])
        branches = [pooled, self.point_branch(x)] + [branch(x) for branch in self.dilated_branches]
        return self.project(torch.cat(branches, dim=1))


class Decoder(nn.Module):
    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...] = (6, 12, 18),
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.fuse = conv_relu(in_channels, channels, bias=False)  # F_conv
        self.aspp = ASPP(channels, dilations)  # F_ASPP
        self.residual = nn.Sequential(conv_relu(channels, channels, 3), conv_relu(channels, channels, 3))
        self.classifier = nn.Sequential(  # F_cls
            conv_relu(channels, channels, 3), nn.Dropout2d(dropout), nn.Conv2d(channels, 2, 1)
        )

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """``fused`` x_out B x in_channels x h x w -> logits B x 2 x h x w (feature resolution)."""
        x = self.aspp(self.fuse(fused))
        x = x + self.residual(x)
        return self.classifier(x)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=True) upsampling of feature-resolution logits to the input size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
