"""DPCN's modules, one file per paper section: prototypes (MAP, cosine prior), sam, ffm, dcm, decoder."""

from dpcn_lite.modules.dcm import DynamicConvolutionModule, dynamic_depthwise_conv, foreground_vectors
from dpcn_lite.modules.decoder import ASPP, Decoder, upsample_logits
from dpcn_lite.modules.ffm import FeatureFilteringModule
from dpcn_lite.modules.prototypes import cosine_prior, masked_average_pooling, resize_support_mask
from dpcn_lite.modules.sam import SupportActivationModule, activation_maps

__all__ = [
    "ASPP", "Decoder", "DynamicConvolutionModule", "FeatureFilteringModule", "SupportActivationModule",
    "activation_maps", "cosine_prior", "dynamic_depthwise_conv", "foreground_vectors", "masked_average_pooling",
    "resize_support_mask", "upsample_logits",
]
