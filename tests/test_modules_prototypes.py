"""Masked average pooling, support-mask resizing and min-max normalisation (``dpcn_lite.modules.prototypes``)."""

from __future__ import annotations

import torch

from dpcn_lite.modules.prototypes import masked_average_pooling, minmax_normalize, resize_support_mask


def test_masked_average_pooling_is_the_mean_over_the_mask() -> None:
    features = torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :2] = 1
    mask[1, 0, 3, 3] = 1
    prototype = masked_average_pooling(features, mask, eps=0.0)
    assert torch.allclose(prototype[0], features[0, :, :2, :2].mean(dim=(1, 2)))
    assert torch.allclose(prototype[1], features[1, :, 3, 3])


def test_masked_average_pooling_of_an_empty_mask_is_zero_not_nan() -> None:
    prototype = masked_average_pooling(torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    assert torch.equal(prototype, torch.zeros(1, 3))


def test_support_masks_count_ignore_as_background_and_resize_softly() -> None:
    labels = torch.zeros(1, 2, 17, 17, dtype=torch.long)
    labels[0, 0, :9] = 1
    labels[0, 1] = 255
    soft = resize_support_mask(labels, (3, 3))
    assert soft.shape == (1, 2, 1, 3, 3)
    assert soft[0, 1].max() == 0  # all-ignore -> no foreground
    assert soft[0, 0, 0, 0].tolist() == [1.0, 1.0, 1.0] and soft[0, 0, 0, 2].tolist() == [0.0, 0.0, 0.0]


def test_minmax_normalisation_per_map() -> None:
    maps = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]], [[[7.0, 7.0], [7.0, 7.0]]]])
    out = minmax_normalize(maps)
    assert torch.allclose(out[0].flatten(), torch.tensor([0.0, 0.5, 0.25, 1.0]), atol=1e-6)
    assert torch.equal(out[1], torch.zeros_like(out[1]))

