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
    [("tiny_cnn", 32, 32), ("resnet18", 384, 512), ("resnet50", 1536, 2048), ("resnet50_deep", 1536, 2048),
     ("efficientnet_lite0", 152, 320)],
)
def test_mid_and_high_features_share_the_stride_8_grid(name: str, mid: int, high: int) -> None:
    backbone = build_backbone(name, pretrained=False)
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 65, 65))
    # (65 - 1) / 8 + 1 = 9: the same grid PFENet gets for 473 -> 60.
    assert features.mid.shape == (1, mid, 9, 9)
    assert features.high.shape == (1, high, 9, 9)
    assert (backbone.mid_channels, backbone.high_channels) == (mid, high)
    # The high stage reads the leading channels of mid, so high features can be made from mid (support masking).
    assert torch.equal(backbone.high_from_mid(features.mid), features.high)


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


# ---------------------------------------------------------------------------------------------------------------
# PFENet's deep-stem ResNet-50 and its user-supplied weights file
# ---------------------------------------------------------------------------------------------------------------

STEM = {"conv1": (64, 3, 3, 3), "bn1": (64,), "conv2": (64, 64, 3, 3), "bn2": (64,), "conv3": (128, 64, 3, 3),
        "bn3": (128,)}


def pfenet_file_state() -> dict[str, torch.Tensor]:
    """A state dict named and shaped like PFENet's resnet50_v2.pth, written from scratch with random values:
    the deep stem, torchvision's layer1-4 (layer1 reading 128 channels) and an ImageNet classifier ``fc``."""
    import torchvision.models as tvm

    generator = torch.Generator().manual_seed(0)
    shapes = {}
    for name, shape in STEM.items():
        if name.startswith("conv"):
            shapes[f"{name}.weight"] = shape
        else:
            shapes.update({f"{name}.{p}": shape for p in ("weight", "bias", "running_mean", "running_var")})
    for key, value in tvm.resnet50(weights=None).state_dict().items():
        if key.startswith(("layer", "fc.")) and not key.endswith("num_batches_tracked"):
            shapes[key] = tuple(value.shape)
    shapes["layer1.0.conv1.weight"] = (64, 128, 1, 1)
    shapes["layer1.0.downsample.0.weight"] = (256, 128, 1, 1)
    # Positive values keep BatchNorm variances valid; distinct random values make any misplacement visible.
    return {key: torch.rand(shape, generator=generator) + 0.5 for key, shape in shapes.items()}


@pytest.fixture(scope="module")
def pfenet_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, torch.Tensor]]:
    state = pfenet_file_state()
    path = tmp_path_factory.mktemp("initmodel") / "resnet50_v2.pth"
    torch.save(state, path)
    return str(path), state


def test_deep_stem_resnet50_has_pfenet_layout_and_dilation() -> None:
    net = build_backbone("resnet50_deep", pretrained=False)
    convs = [m for m in net.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [STEM["conv1"], STEM["conv2"], STEM["conv3"]]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert net.layer1[0].conv1.in_channels == 128 and net.layer1[0].downsample[0].in_channels == 128
    # PFENet dilates every 3x3 conv of layer3 by 2 and of layer4 by 4, first blocks included, all at stride 1.
    for layer, rate in ((net.layer3, 2), (net.layer4, 4)):
        assert all(block.conv2.dilation == (rate, rate) and block.conv2.stride == (1, 1) for block in layer)
        assert layer[0].downsample[0].stride == (1, 1)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 473, 473)).high.shape == (1, 2048, 60, 60)  # PFENet's 473 -> 60


def test_every_tensor_of_a_pfenet_file_lands_in_its_place(pfenet_file) -> None:
    path, state = pfenet_file
    net = build_backbone("resnet50_deep", pretrained=True, weights=path)
    ours = net.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            continue  # the ImageNet classifier is not part of the backbone
        head = key.split(".")[0]
        name = f"stem.{key}" if head in STEM else key.replace("layer4.", "high_stage.", 1)
        assert torch.equal(ours[name], value), key
    loaded = [k for k in ours if not k.endswith("num_batches_tracked")]
    assert len(loaded) == len(state) - 2  # everything except fc.weight and fc.bias
    # The stem computes conv -> BN -> ReLU three times, then the max-pool, with the file's tensors.
    x = torch.randn(1, 3, 33, 33)
    expected = x
    for index in (1, 2, 3):
        bn = [state[f"bn{index}.{p}"] for p in ("running_mean", "running_var", "weight", "bias")]
        expected = F.conv2d(expected, state[f"conv{index}.weight"], stride=2 if index == 1 else 1, padding=1)
        expected = F.relu(F.batch_norm(expected, *bn, training=False, eps=1e-5))
    expected = F.max_pool2d(expected, 3, stride=2, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(net.stem(x), expected, rtol=1e-4, atol=1e-4)


def test_a_model_config_passes_the_weights_file_to_the_backbone(pfenet_file) -> None:
    from dpcn_lite.config import get_preset
    from dpcn_lite.model import DPCN

    path, state = pfenet_file
    model = DPCN(get_preset("tiny", backbone="resnet50_deep", pretrained=True, backbone_weights=path))
    assert torch.equal(model.backbone.stem.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_weights_file_errors_name_the_problem(tmp_path, pfenet_file) -> None:
    from data_utils.errors import BadArgumentError, DataError

    with pytest.raises(BadArgumentError, match="no such file.*pretrained=False"):
        build_backbone("resnet50_deep", pretrained=True, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(BadArgumentError, match="resnet50_v2"):
        build_backbone("resnet50_deep", pretrained=True)
    # torchvision's 7x7-stem naming: conv2/conv3 missing, conv1 of the wrong shape, an unknown key
    path, state = pfenet_file
    foreign = dict(state, **{"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.weight": torch.zeros(1)})
    for key in ("conv2.weight", "conv3.weight"):
        del foreign[key]
    torch.save(foreign, tmp_path / "torchvision.pth")
    with pytest.raises(DataError, match=r"missing conv2.weight, conv3.weight; unexpected extra.weight; wrong shapes "
                                        r"conv1.weight \(64, 3, 7, 7\) \(needs \(64, 3, 3, 3\)\)"):
        build_backbone("resnet50_deep", pretrained=True, weights=str(tmp_path / "torchvision.pth"))
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(DataError, match="no state dict"):
        build_backbone("resnet50_deep", pretrained=True, weights=str(tmp_path / "list.pth"))
    (tmp_path / "text.pth").write_text("not a weights file")
    with pytest.raises(DataError, match="cannot be read"):
        build_backbone("resnet50_deep", pretrained=True, weights=str(tmp_path / "text.pth"))
    # A file saved from DataParallel (``module.`` prefix) or as {"state_dict": ...} loads.
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    net = build_backbone("resnet50_deep", pretrained=True, weights=str(tmp_path / "wrapped.pth"))
    assert torch.equal(net.high_stage[0].conv2.weight, state["layer4.0.conv2.weight"])


def test_the_model_config_checks_the_weights_setting() -> None:
    from dpcn_lite.config import get_preset

    with pytest.raises(ValueError, match="backbone_weights"):
        get_preset("paper", backbone="resnet50_deep")  # pretrained without a file
    with pytest.raises(ValueError, match="read only by"):
        get_preset("paper", backbone_weights="resnet50_v2.pth")  # torchvision's ResNet would ignore it
    with pytest.raises(ValueError, match="file path"):
        get_preset("paper", backbone="resnet50_deep", backbone_weights=3)
    config = get_preset("paper", backbone="resnet50_deep", backbone_weights="initmodel/resnet50_v2.pth")
    assert config.backbone_weights == "initmodel/resnet50_v2.pth"  # the file is read when the model is built
    assert get_preset("tiny", backbone="resnet50_deep", pretrained=False).backbone_weights is None
