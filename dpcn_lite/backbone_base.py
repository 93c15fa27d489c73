"""The interface every backbone offers: :class:`Backbone` and the feature tuples it returns.

DPCN needs two outputs of one network at output stride 8: mid-level features (ResNet: concat(layer3, layer2)) and
high-level ones (ResNet: layer4). The concrete backbones live in ``dpcn_lite.resnets`` and ``dpcn_lite.backbones``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn


class BackboneFeatures(NamedTuple):
    """The backbone's two outputs. For supports the leading dims are ``B x K``; otherwise ``B`` (or ``N``)."""

    mid: torch.Tensor
    """Mid-level features (ResNet: concat(layer3, layer2)), stride 8."""
    high: torch.Tensor
    """High-level features (ResNet: layer4), stride 8; never masked (the support mask is a model's step)."""


class EpisodeFeatures(NamedTuple):
    """Backbone features of a whole episode batch: query ``B x ...``, supports ``B x K x ...`` (the feature cache)."""

    query: BackboneFeatures
    support: BackboneFeatures


class Backbone(nn.Module):
    """Base class: ``low`` stages (frozen) produce the mid-level features, ``high_stage`` the high-level ones.

    Subclasses fill in ``mid_channels``, ``high_channels``, ``high_input_channels``, ``mean``, ``std``, own a module
    ``high_stage`` and implement ``_forward_mid``. The high stage's input is always the *leading*
    ``high_input_channels`` channels of ``mid`` (ResNet: mid = concat(layer3, layer2), layer4 reads layer3), so high
    features can be made again from mid alone, e.g. with the support mask applied first (:meth:`high_from_mid`).
    """

    mid_channels: int
    high_channels: int
    high_input_channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_stride: int = 8
    high_stage: nn.Module

    def freeze(self, train_high_stage: bool) -> None:
        """Freeze every parameter except (optionally) those of the high stage."""
        for p in self.parameters():
            p.requires_grad_(False)
        if train_high_stage:
            for p in self.high_stage.parameters():
                p.requires_grad_(True)

    @property
    def has_trainable_parameters(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> "Backbone":
        """Switch modes but keep every BatchNorm in eval: statistics stay frozen (small batches, frozen backbone)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def _forward_mid(self, images: torch.Tensor) -> torch.Tensor:
        """Mid-level features whose leading ``high_input_channels`` channels feed the high stage."""
        raise NotImplementedError

    def high_from_mid(self, mid: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The high stage on the leading channels of ``mid`` (N x Cm x h x w), times ``mask`` (N x 1 x h x w) if given.

        With the support mask this is PFENet's layer4(layer3 * M_s): layer4 then sees only the object."""
        x = mid[:, : self.high_input_channels]
        if mask is not None:
            x = x * mask
        high_trainable = any(p.requires_grad for p in self.high_stage.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and high_trainable):
            return self.high_stage(x)

    def forward(self, images: torch.Tensor, high: bool = True) -> BackboneFeatures:
        """``images`` N x 3 x H x W (normalised with ``self.mean``/``self.std``) -> features at stride 8.

        ``high=False`` skips the high stage (``high`` is then None) for callers that make it from mid themselves."""
        # The low stages are always frozen: no graph is kept for them.
        with torch.no_grad():
            mid = self._forward_mid(images)
        return BackboneFeatures(mid=mid, high=self.high_from_mid(mid) if high else None)
