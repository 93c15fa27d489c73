"""Dilated ResNets at output stride 8 (473 px -> 60 x 60 for layer2, layer3 and layer4).

* :class:`ResNetBackbone`: torchvision's ResNet-18/50/101 (7x7 stem, ImageNet weights downloaded by torchvision).
* :class:`DeepStemResNet50`: PFENet's ResNet-50 ("resnet50_v2" from PSPNet's semseg code), the network behind PFENet's
  and DPCN's numbers: a deep stem of three 3x3 convs. Its ImageNet weights are a file the user downloads;
  :func:`load_pfenet_resnet_weights` reads it by PFENet's key names.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from data_utils.errors import BadArgumentError, DataError
from data_utils.transforms import IMAGENET_NORMALIZATION
from dpcn_lite.backbone_base import Backbone


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


class DilatedResNet(Backbone):
    """What every ResNet here shares: a stem and layer1-3 (frozen), layer4 as the high stage, all at stride 8;
    mid = concat(layer3, layer2), high = layer4 (paper §3, PFENet convention)."""

    def __init__(self, net: nn.Module, stem: nn.Sequential, expansion: int) -> None:
        super().__init__()
        self.stem = stem
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.high_stage = net.layer4
        self.mid_channels = (128 + 256) * expansion
        self.high_input_channels = 256 * expansion
        self.high_channels = 512 * expansion
        self.mean, self.std = IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std

    @property
    def layer4(self) -> nn.Module:
        return self.high_stage

    def _forward_mid(self, images: torch.Tensor) -> torch.Tensor:
        layer2 = self.layer2(self.layer1(self.stem(images)))
        return torch.cat([self.layer3(layer2), layer2], dim=1)


class ResNetBackbone(DilatedResNet):
    """torchvision ResNet dilated to output stride 8 (layer3 dilation 2, layer4 dilation 4).

    It has the standard 7x7 stem; PFENet's deep-stem "resnet50_v2" is :class:`DeepStemResNet50` (``resnet50_deep``).
    """

    def __init__(self, depth: int = 50, pretrained: bool = True) -> None:
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
        super().__init__(net, nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), 4 if bottleneck else 1)


# ----------------------------------------------------------------------------------------------------------------
# PFENet's deep-stem ResNet-50 ("resnet50_v2")
# ----------------------------------------------------------------------------------------------------------------

PFENET_STEM = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
"""Names of the deep stem's tensors in PFENet's file (our ``stem.conv1`` ... ``stem.bn3``)."""


class DeepStemResNet50(DilatedResNet):
    """PFENet's ResNet-50: three 3x3 convs (3->64 stride 2, 64->64, 64->128, each + BN + ReLU) and a 3x3/2 max-pool
    replace the 7x7 stem, so layer1 starts from 128 channels; the bottleneck stages are torchvision's.

    Dilated as PFENet dilates it: every 3x3 conv of layer3 at dilation 2 and of layer4 at dilation 4, all at stride 1
    (torchvision's own dilation keeps the first block of each stage at the previous rate). Random initialisation;
    :func:`load_pfenet_resnet_weights` loads the ImageNet file.
    """

    def __init__(self) -> None:
        import torchvision.models as tvm

        net = tvm.resnet50(weights=None)
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        for index, (cin, cout) in enumerate(((3, 64), (64, 64), (64, 128)), start=1):
            stem[f"conv{index}"] = nn.Conv2d(cin, cout, 3, stride=2 if index == 1 else 1, padding=1, bias=False)
            stem[f"bn{index}"] = nn.BatchNorm2d(cout)
            stem[f"relu{index}"] = nn.ReLU(inplace=True)
        stem["maxpool"] = net.maxpool
        first = net.layer1[0]  # its input is 128 channels wide now, not 64
        first.conv1 = nn.Conv2d(128, 64, 1, bias=False)
        first.downsample[0] = nn.Conv2d(128, 256, 1, bias=False)
        for conv in [m for m in stem.values() if isinstance(m, nn.Conv2d)] + [first.conv1, first.downsample[0]]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision initialises
        for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):
            for block in layer:
                block.conv2.stride, block.conv2.dilation, block.conv2.padding = (1, 1), (dilation,) * 2, (dilation,) * 2
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1)
        super().__init__(net, nn.Sequential(stem), expansion=4)


def pfenet_names(backbone: DeepStemResNet50) -> dict[str, str]:
    """PFENet's name -> ours for every tensor of the backbone (BatchNorm batch counters aside).

    The stem's ``conv1``/``bn1``/.../``bn3`` are our ``stem.*``, ``layer4`` is our ``high_stage``, layer1-3 match."""
    names = {}
    for ours in backbone.state_dict():
        if ours.endswith("num_batches_tracked"):
            continue
        theirs = ours.removeprefix("stem.")
        if ours.startswith("high_stage."):
            theirs = "layer4." + ours.removeprefix("high_stage.")
        names[theirs] = ours
    return names


def _listed(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def load_pfenet_resnet_weights(backbone: DeepStemResNet50, path: str | Path) -> int:
    """Load PFENet's ImageNet file (``initmodel/resnet50_v2.pth``) into the backbone; returns how many tensors.

    Read with ``weights_only=True`` (tensors only, no code). ``fc.*`` (the ImageNet classifier) is skipped; a
    ``module.`` prefix (a file saved from DataParallel) is dropped. A missing file is a ``BadArgumentError``; a file
    with other names or shapes is a ``DataError`` naming the first mismatches, and nothing is loaded.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise BadArgumentError(
            f"backbone_weights={str(path)!r}: no such file. The deep-stem ResNet-50 needs PFENet's ImageNet weights "
            "(resnet50_v2.pth, from the PSPNet/semseg authors, linked in PFENet's README): download it yourself and "
            "give its path, or set pretrained=False.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated zip archives, objects other than tensors...
        raise DataError(f"{file} cannot be read as a PyTorch weights file ({type(error).__name__}: {error}).") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{file} holds no state dict (a mapping of names to tensors).")
    expected = pfenet_names(backbone)
    given = {k.removeprefix("module."): v for k, v in state.items()
             if not k.removeprefix("module.").startswith("fc.") and not k.endswith("num_batches_tracked")}
    ours = backbone.state_dict()
    problems = []
    if missing := [k for k in expected if k not in given]:
        problems.append(f"missing {_listed(missing)}")
    if unexpected := [k for k in given if k not in expected]:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong := [f"{k} {tuple(v.shape)} (needs {tuple(ours[expected[k]].shape)})" for k, v in given.items()
                 if k in expected and v.shape != ours[expected[k]].shape]:
        problems.append(f"wrong shapes {_listed(wrong)}")
    if problems:
        raise DataError(f"{file} is not PFENet's deep-stem ResNet-50 (resnet50_v2): {'; '.join(problems)}. Expected "
                        "PFENet's names: conv1/bn1/conv2/bn2/conv3/bn3 for the stem, layer1-layer4 as torchvision.")
    backbone.load_state_dict({expected[k]: v for k, v in given.items()}, strict=False)
    return len(given)
