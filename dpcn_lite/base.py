"""FewShotSegmenter: everything DPCN and the baselines share, so that a head is ONE method.

The base class owns
* the backbone (frozen, BN statistics frozen, optionally a trainable last stage) and its input normalisation;
* separate 1x1 reductions of the mid-level features for the query and the supports (conv without bias -> ReLU ->
  Dropout2d), as in PFENet;
* the support masks on the feature grid (label == 1, bilinear, 255 counts as background), and, with
  ``mask_support_high`` (PFENet), the supports' high-level features made from layer3 times that mask;
* for the k-shot modes that fuse predictions (``mask_avg``, ``vote``, ``or``), running the head once per shot (the
  fusion itself is ``dpcn_lite.kshot``);
* upsampling of the logits to the input size, and :meth:`FewShotSegmenter.loss`, which prepares an episode batch for
  the objective of ``dpcn_lite.losses`` (main + lambda x reverse).

A subclass implements :meth:`FewShotSegmenter.head`::

    class MyHead(FewShotSegmenter):
        def __init__(self, config):
            super().__init__(config)
            self.classifier = nn.Conv2d(2 * config.channels, 2, 1)

        def head(self, inputs, intermediates):
            prototype = masked_average_pooling(inputs.support_mid, inputs.support_masks).mean(1)   # B x C
            ...
            return logits  # B x 2 x h x w at feature resolution

Shapes: ``B`` episodes, ``K`` shots, ``C`` = config.channels, ``h x w`` the stride-8 feature grid.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import torch
import torch.nn as nn

from dpcn_lite.backbones import Backbone, BackboneFeatures, EpisodeFeatures, build_backbone
from dpcn_lite.config import DPCNConfig, get_preset
from dpcn_lite.kshot import fuse_shot_logits, per_shot, repeat_per_shot
from dpcn_lite.losses import episode_objective
from dpcn_lite.modules.decoder import upsample_logits
from dpcn_lite.modules.prototypes import resize_support_mask

__all__ = ["BackboneFeatures", "EpisodeFeatures", "FewShotSegmenter", "HeadInputs", "SegmenterOutput"]


class SegmenterOutput(NamedTuple):
    """What every model returns."""

    logits: torch.Tensor
    """B x 2 x H x W at the input resolution (channel 0 background, 1 foreground)."""
    intermediates: dict[str, torch.Tensor]
    """Named inner tensors (detached), empty unless ``return_intermediates=True``."""


class HeadInputs(NamedTuple):
    """What a head receives; everything is already on the stride-8 feature grid."""

    query_mid: torch.Tensor
    """x_q: reduced mid-level query features, B x C x h x w."""
    support_mid: torch.Tensor
    """x_s: reduced mid-level support features, B x K x C x h x w."""
    query_high: torch.Tensor
    """x_q^h: high-level query features, B x Ch x h x w."""
    support_high: torch.Tensor
    """x_s^h: high-level support features, B x K x Ch x h x w: layer4(layer3 * M_s) with ``mask_support_high``, else
    layer4(layer3) (heads mask them again where the paper does, e.g. SAM's x_s^h * M_s)."""
    support_masks: torch.Tensor
    """M_s: soft support masks in [0, 1], B x K x 1 x h x w."""


def _reduction(in_channels: int, channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.ReLU(inplace=True), nn.Dropout2d(dropout))


class FewShotSegmenter(nn.Module):
    """Base of every few-shot head. Build with a :class:`DPCNConfig` (or a preset name)."""

    def __init__(self, config: DPCNConfig | str = "tiny", backbone: Backbone | None = None) -> None:
        super().__init__()
        self.config = get_preset(config) if isinstance(config, str) else config
        cfg = self.config
        self.backbone = backbone if backbone is not None else build_backbone(
            cfg.backbone, pretrained=cfg.pretrained, train_layer4=cfg.train_layer4, weights=cfg.backbone_weights)
        self.reduce_query = _reduction(self.backbone.mid_channels, cfg.channels, cfg.reduction_dropout)
        self.reduce_support = _reduction(self.backbone.mid_channels, cfg.channels, cfg.reduction_dropout)

    # ------------------------------------------------------------------------------------------------------------
    # The one method a head implements
    # ------------------------------------------------------------------------------------------------------------

    def head(self, inputs: HeadInputs, intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
        """Feature-resolution logits B x 2 x h x w. Put anything worth seeing into ``intermediates`` by name."""
        raise NotImplementedError(f"{type(self).__name__} must implement head(inputs, intermediates).")

    # ------------------------------------------------------------------------------------------------------------
    # Public interface (docs/architecture.md)
    # ------------------------------------------------------------------------------------------------------------

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) on a 0-1 pixel scale that the backbone expects; data transforms must use the same."""
        return tuple(self.backbone.mean), tuple(self.backbone.std)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser should see (the head, plus the backbone's last stage when trainable)."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``trainable``, ``backbone`` and ``head`` (everything outside the backbone)."""
        total = sum(p.numel() for p in self.parameters())
        backbone = sum(p.numel() for p in self.backbone.parameters())
        trainable = sum(p.numel() for p in self.trainable_parameters())
        return {"total": total, "trainable": trainable, "backbone": backbone, "head": total - backbone}

    def train(self, mode: bool = True) -> "FewShotSegmenter":
        super().train(mode)
        self.backbone.train(mode)  # keeps the backbone's BatchNorm statistics frozen
        return self

    def extract_features(self, images: torch.Tensor, high: bool = True) -> BackboneFeatures:
        """The backbone alone: ``images`` N x 3 x H x W -> BackboneFeatures(mid N x Cm x h x w, high N x Ch x h x w)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected images N x 3 x H x W, got shape {tuple(images.shape)}.")
        if min(images.shape[-2:]) < 8:
            raise ValueError(f"Images of size {tuple(images.shape[-2:])} are too small: the backbone has stride 8.")
        return self.backbone(images, high=high)

    def extract_support_features(self, support_images: torch.Tensor, high: bool = True) -> BackboneFeatures:
        """Backbone features of B x K x 3 x H x W supports, with leading dims B x K. They never depend on the masks.

        ``high=False`` skips the supports' own high stage (``high`` is None): enough when ``mask_support_high`` makes
        x_s^h from mid and the masks anyway, and nothing (the reverse loss) needs the unmasked one."""
        b, k = support_images.shape[:2]
        flat = self.extract_features(support_images.flatten(0, 1), high=high)
        return BackboneFeatures(*(None if t is None else t.view(b, k, *t.shape[1:]) for t in flat))

    def extract_episode_features(self, query_image: torch.Tensor, support_images: torch.Tensor,
                                 support_high: bool = True) -> EpisodeFeatures:
        """Backbone features of an episode batch: query B x 3 x H x W, supports B x K x 3 x H x W."""
        return EpisodeFeatures(self.extract_features(query_image),
                               self.extract_support_features(support_images, high=support_high))

    def support_high_features(self, support_features: BackboneFeatures, masks: torch.Tensor) -> torch.Tensor:
        """x_s^h, B x K x Ch x h x w, from the supports' features and their soft masks on the grid (B x K x 1 x h x w).

        With ``mask_support_high`` (PFENet's code; the DPCN paper does not say) layer4 runs again on layer3 times the
        mask, so it sees only the object; otherwise the backbone's own high features are used."""
        if not self.config.mask_support_high:
            return support_features.high
        b, k = masks.shape[:2]
        high = self.backbone.high_from_mid(support_features.mid.flatten(0, 1), masks.flatten(0, 1))
        return high.view(b, k, *high.shape[1:])

    def forward(
        self,
        query_image: torch.Tensor,
        support_images: torch.Tensor,
        support_masks: torch.Tensor,
        return_intermediates: bool = False,
    ) -> SegmenterOutput:
        """Segment the query given K annotated supports.

        ``query_image`` B x 3 x H x W, ``support_images`` B x K x 3 x H x W, ``support_masks`` B x K x H x W with
        1 = object, 0 = background, 255 = ignore. (A single shot may also be given as B x 3 x H x W / B x H x W.)
        """
        support_images, support_masks = self._check_episode(query_image, support_images, support_masks)
        features = self.extract_episode_features(query_image, support_images,
                                                 support_high=not self.config.mask_support_high)
        return self.forward_features(features.query, features.support, support_masks,
                                     tuple(query_image.shape[-2:]), return_intermediates)

    def forward_features(
        self,
        query_features: BackboneFeatures,
        support_features: BackboneFeatures,
        support_masks: torch.Tensor,
        image_hw: tuple[int, int],
        return_intermediates: bool = False,
    ) -> SegmenterOutput:
        """The head alone, on backbone features (query ``B x ...``, supports ``B x K x ...``, masks B x K x H x W).

        The features are the backbone's for the images alone (as the feature cache stores them); the support masks
        enter here, also where ``mask_support_high`` remakes x_s^h (``support_features.high`` may then be None)."""
        if support_features.mid.dim() != 5:
            raise ValueError("support_features must have leading dims B x K (got mid of shape "
                             f"{tuple(support_features.mid.shape)}).")
        b, k = support_features.mid.shape[:2]
        if support_masks.dim() != 4 or tuple(support_masks.shape[:2]) != (b, k):
            raise ValueError(
                f"support_masks must be B x K x H x W = {b} x {k} x H x W, got {tuple(support_masks.shape)}.")
        support_grid = tuple(support_features.mid.shape[-2:])
        masks = resize_support_mask(support_masks, support_grid)
        inputs = HeadInputs(
            query_mid=self.reduce_query(query_features.mid),
            support_mid=self.reduce_support(support_features.mid.flatten(0, 1)).view(b, k, -1, *support_grid),
            query_high=query_features.high,
            support_high=self.support_high_features(support_features, masks),
            support_masks=masks,
        )
        intermediates: dict[str, torch.Tensor] = {}
        if k > 1 and self.config.kshot_fusion != "pool":
            logits_low = self._fuse_shots(inputs, intermediates)
        else:
            logits_low = self.head(inputs, intermediates)
        intermediates["logits_low"] = logits_low
        logits = upsample_logits(logits_low, image_hw)
        if not return_intermediates:
            return SegmenterOutput(logits, {})
        return SegmenterOutput(logits, {name: t.detach() for name, t in intermediates.items()})

    @torch.no_grad()
    def predict(self, query_image: torch.Tensor, support_images: torch.Tensor,
                support_masks: torch.Tensor) -> torch.Tensor:
        """Hard query masks B x H x W (0/1) in eval mode (the mode is restored afterwards)."""
        was_training = self.training
        self.eval()
        try:
            return self(query_image, support_images, support_masks).logits.argmax(dim=1)
        finally:
            self.train(was_training)

    def loss(self, batch: Mapping[str, Any], features: EpisodeFeatures | tuple | None = None) -> dict[str, Any]:
        """Training objective on a collated episode batch: main CE + lambda x reverse CE (``dpcn_lite.losses``).

        ``batch`` needs ``query_mask`` and ``support_masks``, plus ``query_image``/``support_images`` unless
        ``features`` (an :class:`EpisodeFeatures`, or a (query, support) pair, e.g. from the feature cache) is given.
        Returns ``loss`` (to backpropagate), ``main`` and ``reverse`` (detached), ``logits`` (B x 2 x H x W) and
        ``reverse_episodes`` (how many episodes had a non-empty predicted mask and entered the reverse loss).
        """
        query_mask = batch["query_mask"]
        support_masks = batch["support_masks"]
        if support_masks.dim() == 3:
            support_masks = support_masks[:, None]
        if features is None:
            support_images = batch["support_images"]
            if support_images.dim() == 4:
                support_images = support_images[:, None]
            self._check_episode(batch["query_image"], support_images, support_masks)
            # The reverse pass takes the supports as queries: it needs their unmasked layer4.
            cfg = self.config
            features = self.extract_episode_features(
                batch["query_image"], support_images,
                support_high=not cfg.mask_support_high or cfg.reverse_loss_weight > 0)
        else:
            if self.training and self.backbone.has_trainable_parameters:
                raise ValueError(
                    "Cached backbone features bypass the trainable backbone stage (train_layer4=True), which would "
                    "then never learn. Pass images instead, or use a config with train_layer4=False."
                )
            features = EpisodeFeatures(*features)
        return episode_objective(self._segment, features, query_mask, support_masks,
                                 reverse_weight=self.config.reverse_loss_weight, ignore_index=self.config.ignore_index)

    # ------------------------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------------------------

    def _segment(self, query_features: BackboneFeatures, support_features: BackboneFeatures,
                 support_masks: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Logits only: what the objective needs (``dpcn_lite.losses.Segment``)."""
        return self.forward_features(query_features, support_features, support_masks, image_hw).logits

    def _fuse_shots(self, inputs: HeadInputs, intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
        """Table 7's alternatives: run the head once per shot (as 1-shot episodes); ``dpcn_lite.kshot`` fuses them."""
        k = inputs.support_mid.shape[1]
        single = HeadInputs(
            query_mid=repeat_per_shot(inputs.query_mid, k),
            support_mid=per_shot(inputs.support_mid),
            query_high=repeat_per_shot(inputs.query_high, k),
            support_high=per_shot(inputs.support_high),
            support_masks=per_shot(inputs.support_masks),
        )
        return fuse_shot_logits(self.head(single, intermediates), k, self.config.kshot_fusion, intermediates)

    @staticmethod
    def _check_episode(query_image: torch.Tensor, support_images: torch.Tensor,
                       support_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn shape mistakes into clear errors; accept a single shot without its K axis."""
        if query_image.dim() != 4 or query_image.shape[1] != 3:
            raise ValueError(f"query_image must be B x 3 x H x W, got {tuple(query_image.shape)}.")
        if support_images.dim() == 4:
            support_images = support_images[:, None]
        if support_masks.dim() == 3:
            support_masks = support_masks[:, None]
        if support_images.dim() != 5 or support_images.shape[2] != 3:
            raise ValueError(f"support_images must be B x K x 3 x H x W, got {tuple(support_images.shape)}.")
        b, k = support_images.shape[:2]
        if k == 0:
            raise ValueError("The episode has no support (K = 0); give at least one annotated support image.")
        if b != query_image.shape[0]:
            raise ValueError(f"Batch sizes differ: {query_image.shape[0]} queries but {b} support sets.")
        if tuple(support_masks.shape) != (b, k, *support_images.shape[-2:]):
            raise ValueError(f"support_masks must be B x K x H x W = {(b, k, *support_images.shape[-2:])}, "
                             f"got {tuple(support_masks.shape)}.")
        return support_images, support_masks
