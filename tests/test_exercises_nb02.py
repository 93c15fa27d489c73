"""Notebook 02's exercise checks pass right answers and name the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.backbones import build_backbone
from dpcn_lite.exercises import ExerciseError, nb02
from dpcn_lite.modules.prototypes import resize_support_mask
from dpcn_lite.viz.activations import pca_rgb


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- feature_grid_size ----------------------------------------------------------------------------------------------


def grid(size):
    for _ in range(3):
        size = -(-size // 2)
    return size


def test_feature_grid_size_passes_a_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_feature_grid_size(grid)
    nb02.check_feature_grid_size(lambda size: -(-size // 8))
    assert capsys.readouterr().out.count("✓ feature_grid_size") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (lambda size: size // 8, "rounds down"),
    (lambda size: round(size / 8), "round"),
    (lambda size: 8, "output stride"),
    (lambda size: size / 8, "return an int"),
])
def test_feature_grid_size_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb02.check_feature_grid_size(answer)


# --- mid_and_high_features ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return build_backbone("efficientnet_lite0", pretrained=False, train_layer4=False).eval()


def _stages(backbone, images):
    x = backbone.stem(images)
    for block in backbone.low_blocks:
        x = block(x)
    stage_40 = x
    for block in backbone.middle_blocks:
        x = block(x)
    return stage_40, x


def mid_and_high(backbone, images):
    stage_40, stage_112 = _stages(backbone, images)
    return torch.cat([stage_112, stage_40], dim=1), backbone.high_stage(stage_112)


def mid_low_first(backbone, images):
    stage_40, stage_112 = _stages(backbone, images)
    return torch.cat([stage_40, stage_112], dim=1), backbone.high_stage(stage_112)


def high_swapped(backbone, images):
    mid, high = mid_and_high(backbone, images)
    return high, mid


def mid_only_deep(backbone, images):
    stage_40, stage_112 = _stages(backbone, images)
    return stage_112, backbone.high_stage(stage_112)


def high_from_shallow(backbone, images):
    stage_40, stage_112 = _stages(backbone, images)
    mid = torch.cat([stage_112, stage_40], dim=1)
    return mid, backbone.high_stage(stage_112 * 0.5)


def test_mid_and_high_passes_a_right_answer(lite0, capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_mid_and_high(mid_and_high, lite0)
    assert capsys.readouterr().out.startswith("✓ mid_and_high_features")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (mid_low_first, "40-channel stage first"),
    (high_swapped, r"\(mid, high\) in that order"),
    (mid_only_deep, "shape"),
    (high_from_shallow, "apply high_stage to the 112-channel stage"),
])
def test_mid_and_high_names_the_mistake(lite0, answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb02.check_mid_and_high(answer, lite0)


# --- pca_to_rgb -----------------------------------------------------------------------------------------------------


def pca_torch(features):
    channels, height, width = features.shape
    pixels = features.reshape(channels, -1).T.double()
    pixels = pixels - pixels.mean(dim=0, keepdim=True)
    _, _, vt = torch.linalg.svd(pixels, full_matrices=False)
    projected = pixels @ vt[:3].T
    projected = (projected - projected.min(0).values) / (projected.max(0).values - projected.min(0).values)
    return projected.reshape(height, width, 3).numpy()


def pca_not_centred(features):
    array = features.numpy().reshape(features.shape[0], -1).T
    _, _, vt = np.linalg.svd(array, full_matrices=False)
    projected = array @ vt[:3].T
    low, high = projected.min(0), projected.max(0)
    return ((projected - low) / (high - low)).reshape(*features.shape[1:], 3)


def pca_global_minmax(features):
    array = features.numpy().reshape(features.shape[0], -1).T
    array = array - array.mean(0)
    _, _, vt = np.linalg.svd(array, full_matrices=False)
    projected = array @ vt[:3].T
    return ((projected - projected.min()) / (projected.max() - projected.min())).reshape(*features.shape[1:], 3)


def pca_channels_first(features):
    return np.moveaxis(pca_rgb(features), -1, 0)


def pca_reversed(features):
    return pca_rgb(features)[..., ::-1]


def test_pca_to_rgb_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_pca_to_rgb(pca_rgb)
    nb02.check_pca_to_rgb(pca_torch)
    nb02.check_pca_to_rgb(lambda f: 1 - pca_rgb(f))
    assert capsys.readouterr().out.count("✓ pca_to_rgb") == 3


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (pca_not_centred, "centre the cells first"),
    (pca_global_minmax, "on its own"),
    (pca_channels_first, "colour last"),
    (pca_reversed, "out of order"),
])
def test_pca_to_rgb_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb02.check_pca_to_rgb(answer)


# --- mask_on_grid ---------------------------------------------------------------------------------------------------


def mask_on_grid(label, size):
    return F.interpolate((label == 1).float()[None, None], size=size, mode="bilinear", align_corners=True)[0, 0]


def test_mask_on_grid_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_mask_on_grid(mask_on_grid)
    nb02.check_mask_on_grid(lambda label, size: resize_support_mask(label, size))  # 1×h×w is accepted
    assert capsys.readouterr().out.count("✓ mask_on_grid") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (lambda label, size: F.interpolate((label == 1).float()[None, None], size=size, mode="bilinear",
                                       align_corners=False)[0, 0], "align_corners=True"),
    (lambda label, size: F.interpolate((label == 1).float()[None, None], size=size, mode="nearest")[0, 0],
     "that is nearest"),
    (lambda label, size: F.interpolate((label != 0).float()[None, None], size=size, mode="bilinear",
                                       align_corners=True)[0, 0], "255 pixels counted as the class"),
    (lambda label, size: F.interpolate(label.float()[None, None], size=size, mode="bilinear",
                                       align_corners=True)[0, 0], "255 pixels counted as the class"),
])
def test_mask_on_grid_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb02.check_mask_on_grid(answer)


# --- cosine_map -----------------------------------------------------------------------------------------------------


def cosine_by_hand(features, vector):
    dot = (features * vector[:, None, None]).sum(dim=0)
    return dot / (features.norm(dim=0) * vector.norm()).clamp_min(1e-8)


def cosine_no_eps(features, vector):
    return (features * vector[:, None, None]).sum(dim=0) / (features.norm(dim=0) * vector.norm())


def cosine_dot(features, vector):
    return (features * vector[:, None, None]).sum(dim=0)


def cosine_cells_only(features, vector):
    return (features * vector[:, None, None]).sum(dim=0) / features.norm(dim=0).clamp_min(1e-8)


def cosine_wrong_axis(features, vector):
    normalised = features / features.norm(dim=(1, 2), keepdim=True)
    return (normalised * (vector / vector.norm())[:, None, None]).sum(dim=0)


def test_cosine_map_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_cosine_map(lambda f, v: F.cosine_similarity(f, v[:, None, None], dim=0))
    nb02.check_cosine_map(cosine_by_hand)
    assert capsys.readouterr().out.count("✓ cosine_map") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (cosine_no_eps, "NaN at the all-zero cell"),
    (cosine_dot, "divide the dot product by both norms"),
    (cosine_cells_only, "not the vector"),
    (cosine_wrong_axis, "normalised each channel over the grid"),
])
def test_cosine_map_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb02.check_cosine_map(answer)
