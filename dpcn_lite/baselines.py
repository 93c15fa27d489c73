"""Two baselines on the same base as DPCN, so every DPCN number has a fair neighbour.

Both are :class:`~dpcn_lite.base.FewShotSegmenter` subclasses: same backbone, same 1x1 feature reductions, same
losses (main + reverse), same training loop and feature cache. Only the head differs.

* :class:`PrototypeSegmenter` (PANet-like): one foreground and one background prototype by masked average pooling;
  every query pixel is classified by its cosine similarity to the two, times a learned scale. No convolution sees the
  query's spatial structure: this is the "plain prototype matching" that the DPCN paper says misses holes and slots.
* :class:`PriorMaskSegmenter` (PFENet-like): the training-free cosine prior from high-level features (max over support
  pixels, min-max normalised), the expanded foreground prototype and the query features go through a small conv decoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpcn_lite.base import FewShotSegmenter, HeadInputs
from dpcn_lite.config import DPCNConfig
from dpcn_lite.modules.prototypes import cosine_prior, expand_prototype, masked_average_pooling


class PrototypeSegmenter(FewShotSegmenter):
    """PANet-like: logits = scale · cos(query pixel, [background prototype, foreground prototype])."""

    def __init__(self, config: DPCNConfig | str = "tiny", backbone=None, initial_scale: float = 20.0) -> None:
        super().__init__(config, backbone)
        # PANet multiplies cosine similarities by 20; here the factor is learned, starting there.
        self.log_scale = nn.Parameter(torch.tensor(float(initial_scale)).log())

    def head(self, inputs: HeadInputs, intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
        eps = self.config.map_eps
        foreground = masked_average_pooling(inputs.support_mid, inputs.support_masks, eps).mean(dim=1)  # B x C
        background = masked_average_pooling(inputs.support_mid, 1.0 - inputs.support_masks, eps).mean(dim=1)
        prototypes = torch.stack([background, foreground], dim=1)  # B x 2 x C
        query = F.normalize(inputs.query_mid, dim=1, eps=self.config.cosine_eps)  # B x C x h x w
        cosine = torch.einsum("bchw,bkc->bkhw", query, F.normalize(prototypes, dim=2, eps=self.config.cosine_eps))
        intermediates["cosine_foreground"] = cosine[:, 1:2]
        intermediates["cosine_background"] = cosine[:, 0:1]
        return self.log_scale.exp() * cosine


class PriorMaskSegmenter(FewShotSegmenter):
    """PFENet-like: concat(query features, expanded prototype, cosine prior) -> small conv decoder -> 2 logits."""

    def __init__(self, config: DPCNConfig | str = "tiny", backbone=None) -> None:
        super().__init__(config, backbone)
        c = self.config.channels
        self.merge = nn.Sequential(nn.Conv2d(2 * c + 1, c, 1, bias=False), nn.ReLU(inplace=True))
        self.refine = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(self.config.classifier_dropout),
            nn.Conv2d(c, 2, 1),
        )

    def head(self, inputs: HeadInputs, intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
        b, k = inputs.support_mid.shape[:2]
        grid = tuple(inputs.query_mid.shape[-2:])
        prototype = masked_average_pooling(inputs.support_mid, inputs.support_masks, self.config.map_eps).mean(dim=1)
        # The prior is computed per shot and averaged over shots (PFENet's k-shot rule).
        prior = cosine_prior(
            inputs.query_high.repeat_interleave(k, dim=0),
            inputs.support_high.flatten(0, 1),
            inputs.support_masks.flatten(0, 1),
            self.config.cosine_eps,
        ).view(b, k, 1, *grid).mean(dim=1)
        x = self.merge(torch.cat([inputs.query_mid, expand_prototype(prototype, grid), prior], dim=1))
        x = x + self.refine(x)
        intermediates["prior"] = prior
        return self.classifier(x)
