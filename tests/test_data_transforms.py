"""Joint transforms keep image and mask aligned; padding and ignore are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_utils.transforms import (
    EFFICIENTNET_LITE_NORMALIZATION,
    IMAGENET_NORMALIZATION,
    ForegroundKeepingCrop,
    plain_transform,
    resized_hw,
    to_tv_tensors,
    train_transform,
)
from data_utils.transforms import test_transform as make_test_transform


def _coded_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose red channel is exactly 255 on the mask's foreground and 0 elsewhere."""
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2, w // 3: 2 * w // 3] = 1
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = mask * 255
    image[..., 1] = 128
    return image, mask


def _unnormalize_red(img: torch.Tensor, norm=IMAGENET_NORMALIZATION) -> torch.Tensor:
    return img[0] * norm.std[0] + norm.mean[0]


def test_test_transform_resizes_longer_side_and_pads_bottom_right():
    image, mask = _coded_pair(60, 120)
    tf = make_test_transform(96)
    img, msk = tf(image, mask)
    assert img.shape == (3, 96, 96) and img.dtype == torch.float32
    assert msk.shape == (96, 96) and msk.dtype == torch.int64
    valid_h, valid_w = tf.valid_hw((60, 120))
    assert (valid_h, valid_w) == (48, 96)
    assert (msk[valid_h:] == 255).all()
    assert torch.equal(img[:, valid_h:], torch.zeros_like(img[:, valid_h:]))  # padding is 0 after normalisation
    assert set(msk[:valid_h].unique().tolist()) == {0, 1}
    # nearest-neighbour resize of the mask: foreground box lands at the scaled position
    assert msk[12:24, 32:64].float().mean() > 0.9 and msk[:10].sum() == 0


def test_train_transform_keeps_image_and_mask_aligned():
    image, mask = _coded_pair(80, 80)
    tf = train_transform(64)
    torch.manual_seed(0)
    for _ in range(10):
        img, msk = tf(image, mask)
        assert img.shape == (3, 64, 64) and msk.shape == (64, 64) and msk.dtype == torch.int64
        assert set(msk.unique().tolist()) <= {0, 1, 255}
        red = _unnormalize_red(img)
        inner = msk == 1
        assert inner.any()
        # away from the (blurred, interpolated) border the foreground is red and the background is not
        eroded = inner.clone()
        for dy, dx in [(-2, 0), (2, 0), (0, -2), (0, 2)]:
            eroded &= torch.roll(inner, (dy, dx), (0, 1))
        if eroded.any():
            assert red[eroded].mean() > 0.9
        assert red[msk == 0].mean() < 0.2


def test_train_crop_pads_with_mean_colour_and_255_on_small_images():
    image, mask = _coded_pair(20, 20)
    torch.manual_seed(1)
    img, msk = train_transform(64)(image, mask)
    assert (msk == 255).float().mean() > 0.5  # most of the 64x64 crop is padding
    padding = msk == 255
    # the padding is the mean colour, i.e. ~0 after normalisation (rotation fill adds a little interpolation)
    assert img[:, padding].abs().median() < 0.05


def test_foreground_keeping_crop_keeps_most_of_the_object():
    mask = np.zeros((200, 200), np.uint8)
    mask[150:190, 150:190] = 1
    image = np.zeros((200, 200, 3), np.uint8)

    def kept_fraction(tries: int) -> float:
        crop = ForegroundKeepingCrop(100, fill=[0, 0, 0], tries=tries)
        torch.manual_seed(0)
        return float(np.mean([int((crop(*to_tv_tensors(image, mask))[1] == 1).sum()) / 1600 for _ in range(30)]))

    # a single random crop usually cuts the corner object; retrying keeps most of it
    assert kept_fraction(1) < 0.4
    assert kept_fraction(30) > 0.75


def test_normalisation_is_a_parameter():
    image = np.full((8, 8, 3), 255, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    img, _ = plain_transform(EFFICIENTNET_LITE_NORMALIZATION)(image, mask)
    assert torch.allclose(img, torch.full_like(img, (255 - 127) / 128), atol=1e-5)
    img, _ = plain_transform(IMAGENET_NORMALIZATION)(image, mask)
    assert torch.allclose(img[0], torch.full_like(img[0], (1 - 0.485) / 0.229), atol=1e-5)


@pytest.mark.parametrize("hw, size, expected", [((100, 50), 40, (40, 20)), ((473, 473), 473, (473, 473)),
                                                ((375, 500), 473, (355, 473))])
def test_resized_hw(hw, size, expected):
    assert resized_hw(hw, size) == expected


def test_rotation_and_padding_fill_mask_with_255_and_image_with_the_mean_colour():
    image = np.full((60, 60, 3), 255, np.uint8)
    mask = np.ones((60, 60), np.uint8)
    tf = train_transform(64)
    torch.manual_seed(0)
    filled = 0
    for _ in range(12):
        img, msk = tf(image, mask)
        assert set(msk.unique().tolist()) <= {1, 255}  # 255 can only come from rotation fill or padding
        # filled pixels at least 3 px away from the object (blur and bilinear rotation smear the edge)
        near_object = torch.nn.functional.max_pool2d((msk != 255).float()[None, None], 7, stride=1, padding=3)[0, 0]
        fill = (msk == 255) & (near_object == 0)
        if fill.sum() > 20:
            filled += 1
            # they hold the mean colour: ~0 after normalisation (the white object is far from 0)
            assert img[:, fill].abs().max() < 0.05
            assert img[:, msk == 1].mean() > 1.5
    assert filled >= 2


def test_a_models_mean_std_pair_is_accepted_wherever_a_normalization_is() -> None:
    """``model.normalization`` is a plain (mean, std) pair; passing it straight to the data layer must just work."""
    from data_utils.transforms import EFFICIENTNET_LITE_NORMALIZATION, Normalization, test_transform

    pair = (EFFICIENTNET_LITE_NORMALIZATION.mean, EFFICIENTNET_LITE_NORMALIZATION.std)
    assert Normalization.of(pair) == EFFICIENTNET_LITE_NORMALIZATION
    image = np.full((10, 20, 3), 127, dtype=np.uint8)
    mask = np.zeros((10, 20), dtype=np.uint8)
    out_image, _ = test_transform(20, pair)(image, mask)
    assert abs(float(out_image[:, :10].mean())) < 0.01  # (127/255 - mean) / std == 0
    with pytest.raises(TypeError, match="mean, std"):
        Normalization.of(0.5)
    with pytest.raises(ValueError, match="positive"):
        Normalization.of(((0.5,) * 3, (0.0,) * 3))
