"""DPCN (Liu et al., CVPR 2022): SAM -> FFM -> DCM -> fusion -> decoder, on the shared FewShotSegmenter base.

    x_out = concat[ x~_q^v, x~_q^h, x~_q^s,  x_p,  M_act^1..3,  M_pse^r ]      (4C + 4 channels, paper Eq. 9)
    logits = F_cls( F_ASPP( F_conv(x_out) ) )                                   (paper Eq. 10)

Ablation switches (``DPCNConfig``) and what the fusion then holds (C = channels, W = number of SAM windows):

| switch off | what replaces it | fusion channels |
|---|---|---|
| ``use_sam`` | FFM gets PFENet's cosine prior (a 1x1 window) as M_pse^0; no activation maps fused | - W |
| ``use_ffm`` | x~_q = x_q (unfiltered); no refined mask fused | - 1 |
| ``use_dcm`` | x~_q itself is fused once instead of the dynamic-conv responses | C instead of len(kernels) C |
| all three | concat[x_q, x_p]: a prototype-concatenation baseline (CANet-like) | 2C |

k-shot (``kshot_fusion="pool"``, the paper): the DCM foreground vectors of all shots are pooled together; SAM maps
(min-max normalised per shot) and MAP prototypes are averaged over shots. Other modes run the head per shot and fuse
the predictions (``dpcn_lite.kshot``).

``build_model(name, config)`` at the end builds DPCN or one of its two baselines by name.
"""

from __future__ import annotations

import torch

from dpcn_lite.backbones import Backbone
from dpcn_lite.base import FewShotSegmenter, HeadInputs
from dpcn_lite.baselines import PriorMaskSegmenter, PrototypeSegmenter
from dpcn_lite.config import MODEL_NAMES, DPCNConfig
from dpcn_lite.modules.dcm import DynamicConvolutionModule
from dpcn_lite.modules.decoder import Decoder
from dpcn_lite.modules.ffm import FeatureFilteringModule
from dpcn_lite.modules.prototypes import cosine_prior, expand_prototype, masked_average_pooling
from dpcn_lite.modules.sam import SupportActivationModule

__all__ = ["DPCN", "HEADS", "INTERMEDIATE_NAMES", "build_model"]

INTERMEDIATE_NAMES = {
    "support_masks_soft": "B x K x 1 x h x w  support masks on the feature grid (label == 1, bilinear)",
    "query_reduced": "B x C x h x w  x_q, reduced mid-level query features",
    "prototype": "B x C  p, masked-average prototype (averaged over shots)",
    "activation_maps": "B x W x h x w  SAM's maps M_act, one per window (SAM on)",
    "pseudo_mask_initial": "B x 1 x h x w  M_pse^0 (SAM's mean map, or the cosine prior when SAM is off)",
    "pseudo_mask_refined": "B x 1 x h x w  M_pse^r (FFM on)",
    "query_filtered": "B x C x h x w  x~_q (equals x_q when FFM is off)",
    "num_foreground": "B  N_fg, support vectors above the threshold (0 -> fallback prototype used)",
    "prototypes_s": "B x C x S  p_s (DCM on)",
    "prototypes_s2": "B x C x S^2  p_{S^2} (DCM on)",
    "kernel_v / kernel_h / kernel_s": "B x C x S x 1 / B x C x 1 x S / B x C x S x S  generated kernels",
    "response_v / response_h / response_s": "B x C x h x w  x~_q convolved with each kernel",
    "fused": "B x F x h x w  x_out, the decoder's input (F = config.fusion_channels)",
    "logits_low": "B x 2 x h x w  logits before upsampling",
    "shot_probabilities": "B x K x h x w  per-shot foreground probabilities (kshot_fusion != 'pool', K > 1)",
}
"""Names returned with ``return_intermediates=True`` and their shapes (h x w = feature grid)."""


class DPCN(FewShotSegmenter):
    """Dynamic Prototype Convolution Network. ``DPCN(get_preset("cpu"))``; see ``dpcn_lite.config`` for switches."""

    def __init__(self, config: DPCNConfig | str = "tiny", backbone: Backbone | None = None) -> None:
        super().__init__(config, backbone)
        cfg = self.config
        self.sam = SupportActivationModule(cfg.sam_windows, cfg.sam_method, cfg.cosine_eps) if cfg.use_sam else None
        self.ffm = FeatureFilteringModule(cfg.channels, cfg.ffm_kernel_size) if cfg.use_ffm else None
        self.dcm = DynamicConvolutionModule(
            cfg.channels, cfg.kernel_size, cfg.dcm_kernels, cfg.square_prototypes, cfg.foreground_threshold,
            cfg.empty_support_fallback,
        ) if cfg.use_dcm else None
        self.decoder = Decoder(cfg.fusion_channels, cfg.channels, cfg.aspp_dilations, cfg.classifier_dropout)

    def head(self, inputs: HeadInputs, intermediates: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.config
        query, support, masks = inputs.query_mid, inputs.support_mid, inputs.support_masks
        grid = tuple(query.shape[-2:])
        intermediates["support_masks_soft"] = masks
        intermediates["query_reduced"] = query

        # Support prototype p (paper §3.4), one per shot, averaged over shots.
        prototype = masked_average_pooling(support, masks, cfg.map_eps).mean(dim=1)
        intermediates["prototype"] = prototype

        # SAM (§3.3): activation maps and the initial pseudo mask.
        activation = None
        pseudo_initial = None
        if self.sam is not None:
            activation, pseudo_initial = self.sam(inputs.query_high, inputs.support_high, masks)
            intermediates["activation_maps"] = activation
        elif self.ffm is not None:  # FFM still needs a prior: PFENet's, i.e. SAM with a 1x1 window
            b, k = support.shape[:2]
            prior = cosine_prior(inputs.query_high.repeat_interleave(k, dim=0), inputs.support_high.flatten(0, 1),
                                 masks.flatten(0, 1), cfg.cosine_eps)
            pseudo_initial = prior.view(b, k, 1, *grid).mean(dim=1)
        if pseudo_initial is not None:
            intermediates["pseudo_mask_initial"] = pseudo_initial

        # FFM (§3.4): refined pseudo mask and background-damped query features.
        refined = None
        filtered = query
        if self.ffm is not None:
            filtered, refined = self.ffm(query, prototype, pseudo_initial)
            intermediates["pseudo_mask_refined"] = refined
        intermediates["query_filtered"] = filtered

        # DCM (§3.5): dynamic kernels from the support foreground, convolved over x~_q.
        if self.dcm is not None:
            query_branches = self.dcm(filtered, support, masks, prototype, intermediates)
        else:
            query_branches = [filtered]

        # Fusion (Eq. 9) and decoder (Eq. 10).
        parts = [*query_branches, expand_prototype(prototype, grid)]
        if activation is not None:
            parts.append(activation)
        if refined is not None:
            parts.append(refined)
        fused = torch.cat(parts, dim=1)
        intermediates["fused"] = fused
        return self.decoder(fused)


HEADS: dict[str, type[FewShotSegmenter]] = {"dpcn": DPCN, "prototype": PrototypeSegmenter, "prior": PriorMaskSegmenter}
"""Model name (``TrainConfig.model``, ``--model``) -> head class; the names are ``config.MODEL_NAMES``."""
assert tuple(HEADS) == MODEL_NAMES


def build_model(name: str, config: DPCNConfig) -> FewShotSegmenter:
    """``dpcn``, ``prototype`` or ``prior`` on the given config (all share the FewShotSegmenter base)."""
    if name not in HEADS:
        raise ValueError(f"Unknown model {name!r}; choose one of {list(MODEL_NAMES)}.")
    return HEADS[name](config)
