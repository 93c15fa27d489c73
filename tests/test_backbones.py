"""Backbones: stride-8 mid/high features, freezing, frozen BatchNorm, and the real offline Lite0 weights."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpcn_lite import backbones
from dpcn_lite.backbones import build_backbone, build_lite0_classifier, lite0_weights_path


@pytest.mark.parametrize(
    "name, mid, high",
    [("tiny_cnn", 32, 32), ("resnet18", 384, 512), ("resnet50", 1536, 2048), ("efficientnet_lite0", 152, 320)],
)
def test_mid_and_high_features_share_the_stride_8_grid(name: str, mid: int, high: int) -> None:
    backbone = build_backbone(name, pretrained=False)
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 65, 65))
    # (65 - 1) / 8 + 1 = 9: the same grid PFENet gets for 473 -> 60.
    assert features.mid.shape == (1, mid, 9, 9)
    assert features.high.shape == (1, high, 9, 9)
    assert (backbone.mid_channels, backbone.high_channels) == (mid, high)


def test_resnet18_layers_are_dilated_not_strided() -> None:
    net = build_backbone("resnet18", pretrained=False)
    assert all(m.stride == (1, 1) for m in net.high_stage.modules() if isinstance(m, torch.nn.Conv2d))
    assert net.high_stage[1].conv1.dilation == (4, 4) and net.layer3[1].conv2.dilation == (2, 2)


def test_only_the_high_stage_is_trainable_when_asked() -> None:
    frozen = build_backbone("tiny_cnn", pretrained=False, train_layer4=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = build_backbone("tiny_cnn", pretrained=False, train_layer4=True)
    names = {n for n, p in trainable.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("high_stage.") for n in names)
    assert all(p.requires_grad for p in trainable.high_stage.parameters())


def test_batchnorm_stays_in_eval_mode_and_its_statistics_do_not_move() -> None:
    backbone = build_backbone("tiny_cnn", pretrained=False, train_layer4=True)
    backbone.train()
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    backbone(torch.randn(2, 3, 32, 32) * 5 + 3).high.sum().backward()
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))


def test_resnet_download_failure_explains_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    import torchvision.models as tvm

    monkeypatch.setattr(tvm, "resnet50", offline)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        build_backbone("resnet50", pretrained=True)


def test_unknown_backbone_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("vgg16")


def test_normalisation_matches_each_backbone() -> None:
    lite0 = build_backbone("efficientnet_lite0", pretrained=False)
    assert np.allclose(np.array(lite0.mean) * 255, 127) and np.allclose(np.array(lite0.std) * 255, 128)
    assert build_backbone("tiny_cnn", pretrained=False).mean == (0.485, 0.456, 0.406)


def _imagenet_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """The whole photo resized to 224 x 224, scaled as TF Lite0 expects: (pixel - 127) / 128."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 127.0) / 128.0


def test_packaged_lite0_weights_are_the_real_imagenet_ones() -> None:
    """Offline: two real photos shipped with scikit-image get their ImageNet classes (cat 285, espresso 967)."""
    import skimage.data as skimage_data  # a dev dependency: real photos shipped inside the package
    classifier = build_lite0_classifier(pretrained=True)
    batch = torch.cat([_imagenet_input(skimage_data.chelsea()), _imagenet_input(skimage_data.coffee())])
    with torch.no_grad():
        probabilities = classifier(batch).softmax(dim=1)
    assert probabilities.argmax(dim=1).tolist() == [285, 967]
    assert probabilities.max(dim=1).values.min() > 0.5
    # A random classifier does not: the check can fail.
    with torch.no_grad():
        torch.manual_seed(0)
        assert build_lite0_classifier(pretrained=False)(batch).argmax(dim=1).tolist() != [285, 967]


def test_backbone_gets_the_same_weights_as_the_classifier() -> None:
    backbone = build_backbone("efficientnet_lite0", pretrained=True)
    classifier = build_lite0_classifier(pretrained=True)
    assert torch.equal(backbone.stem[0].weight, classifier.conv_stem.weight)
    assert torch.equal(backbone.high_stage[-1][0].conv_pwl.weight, classifier.blocks[6][0].conv_pwl.weight)
    assert lite0_weights_path().endswith(".pth")


def test_load_by_position_rejects_a_mismatched_file() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(RuntimeError, match="does not match"):
        backbones.load_state_by_position(model, {"a": torch.zeros(5, 3), "b": torch.zeros(4)})
