"""Prototypes and the cosine prior (paper §3.4 and PFENet's prior, which SAM extends).

* Masked average pooling (MAP): the support prototype p = sum(x * m) / (sum(m) + eps), eps = 5e-4 as in PFENet.
* The cosine prior: for every query pixel, its best cosine similarity to any (masked) support pixel, min-max
  normalised over the query. It is SAM with a 1 x 1 window, and it stands in for SAM when SAM is switched off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_average_pooling(features: torch.Tensor, mask: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """Prototype of the masked region: ``features`` ...xCxHxW, ``mask`` ...x1xHxW (soft) -> ...xC.

    The eps keeps an empty mask finite: its prototype is the zero vector.
    """
    weighted_sum = (features * mask).sum(dim=(-2, -1))
    area = mask.sum(dim=(-2, -1))
    return weighted_sum / (area + eps)


def expand_prototype(prototype: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x_p: a BxC prototype broadcast to BxCxHxW (a real tensor, so it can be concatenated)."""
    return prototype[:, :, None, None].expand(-1, -1, *size)


def l2_normalize_pixels(features: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Divide every pixel vector (dim -3) by its norm + eps; zero vectors stay zero."""
    return features / (features.norm(dim=-3, keepdim=True) + eps)


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Rescale each ``...xHxW`` map to [0, 1] over its own pixels (PFENet's prior normalisation)."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1, keepdim=True).values
    high = flat.max(dim=-1, keepdim=True).values
    return ((flat - low) / (high - low + eps)).view_as(maps)


def cosine_prior(
    query_high: torch.Tensor, support_high: torch.Tensor, support_mask: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """PFENet's pixel-to-pixel prior. ``query_high`` NxChxHqxWq, ``support_high`` NxChxHsxWs, mask Nx1xHsxWs.

    Returns Nx1xHqxWq: max over support pixels of the cosine similarity, min-max normalised.
    """
    support = l2_normalize_pixels(support_high * support_mask, eps).flatten(2)
    query = l2_normalize_pixels(query_high, eps).flatten(2)
    cosine = torch.bmm(support.transpose(1, 2), query)  # N x HsWs x HqWq
    best = cosine.max(dim=1).values.view(query_high.shape[0], 1, *query_high.shape[-2:])
    return minmax_normalize(best, eps)


def resize_support_mask(labels: torch.Tensor, size: tuple[int, int], foreground: int = 1) -> torch.Tensor:
    """Soft mask on the feature grid: (label == 1) resized bilinearly (align_corners=True), PFENet's convention.

    ``labels`` ...xHxW with 1 = foreground, 0 = background, 255 = ignore (counted as background). Returns ...x1xhxw.
    """
    binary = (labels == foreground).to(torch.float32)
    lead = binary.shape[:-2]
    flat = binary.reshape(-1, 1, *binary.shape[-2:])
    if tuple(flat.shape[-2:]) != tuple(size):
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=True)
    return flat.view(*lead, 1, *size)
