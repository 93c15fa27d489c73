"""The protocol's metrics against cases counted by hand (notes §4.2)."""

from __future__ import annotations

import math

import pytest
import torch

from dpcn_lite.metrics import FewShotIoU, StructureFill, episode_counts, mean_and_std, prediction_at_original_size


def row(*values: int) -> torch.Tensor:
    """A 1×N mask: easy to count by eye."""
    return torch.tensor([list(values)])


def test_empty_prediction_scores_zero_foreground_and_counts_background() -> None:
    label = torch.tensor([[1, 1, 0], [0, 0, 255]])
    prediction = torch.zeros(2, 3, dtype=torch.long)
    counts = episode_counts(prediction, label)
    # foreground: nothing predicted, 2 true pixels -> I=0, U=2
    assert (counts.fg_intersection, counts.fg_union) == (0, 2)
    # background: 5 valid pixels predicted bg, 3 of them truly bg -> I=3, U=5 (the 255 pixel is not counted)
    assert (counts.bg_intersection, counts.bg_union) == (3, 5)
    assert counts.fg_iou == 0.0


def test_all_ignore_episode_counts_nothing_whatever_is_predicted() -> None:
    label = torch.full((3, 4), 255)
    for prediction in (torch.zeros(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long)):
        counts = episode_counts(prediction, label)
        assert (counts.fg_intersection, counts.fg_union, counts.bg_intersection, counts.bg_union) == (0, 0, 0, 0)
        assert math.isnan(counts.fg_iou)


def test_all_ignore_episode_leaves_the_accumulated_iou_unchanged() -> None:
    metric = FewShotIoU(class_ids=[3])
    metric.update(row(1, 1, 0, 0), row(1, 0, 0, 0), class_id=3)  # I=1, U=2
    before = metric.compute()["per_class_IoU"]["3"]
    metric.update(row(1, 1, 1, 1), row(255, 255, 255, 255), class_id=3)
    after = metric.compute()
    assert before == after["per_class_IoU"]["3"] == 0.5
    assert after["episodes"] == 2


def test_ignore_pixels_are_removed_from_the_prediction_too() -> None:
    # The predicted foreground on the ignore pixel must not enlarge the union.
    counts = episode_counts(row(1, 1, 0), row(1, 255, 0))
    assert (counts.fg_intersection, counts.fg_union) == (1, 1)
    assert (counts.bg_intersection, counts.bg_union) == (1, 1)


def test_class_iou_is_sum_of_intersections_over_sum_of_unions() -> None:
    metric = FewShotIoU(class_ids=[7])
    # episode A: small object, half right: I=1, U=2 (IoU 0.5)
    metric.update(row(1, 1, 0, 0, 0, 0, 0, 0, 0, 0), row(1, 0, 0, 0, 0, 0, 0, 0, 0, 0), class_id=7)
    # episode B: large object, perfect: I=8, U=8 (IoU 1.0)
    metric.update(row(1, 1, 1, 1, 1, 1, 1, 1, 0, 0), row(1, 1, 1, 1, 1, 1, 1, 1, 0, 0), class_id=7)
    result = metric.compute()
    assert result["per_class_IoU"]["7"] == pytest.approx(9 / 10)
    mean_of_episode_ious = (0.5 + 1.0) / 2
    assert result["per_class_IoU"]["7"] != pytest.approx(mean_of_episode_ious)  # 0.9 vs 0.75: the protocol matters
    assert result["mIoU"] == pytest.approx(0.9)


def test_fb_iou_accumulates_foreground_and_background_over_all_episodes() -> None:
    metric = FewShotIoU(class_ids=[1, 2])
    # episode 1 (class 1): pred 1100, label 1000 -> fg I=1 U=2; bg I=2 U=3
    metric.update(row(1, 1, 0, 0), row(1, 0, 0, 0), class_id=1)
    # episode 2 (class 2): pred 0000, label 0110 -> fg I=0 U=2; bg I=2 U=4
    metric.update(row(0, 0, 0, 0), row(0, 1, 1, 0), class_id=2)
    result = metric.compute()
    fg = (1 + 0) / (2 + 2)
    bg = (2 + 2) / (3 + 4)
    assert result["fg_IoU"] == pytest.approx(fg)
    assert result["bg_IoU"] == pytest.approx(bg)
    assert result["FB-IoU"] == pytest.approx((fg + bg) / 2)


def test_miou_is_the_mean_over_the_folds_classes() -> None:
    metric = FewShotIoU(class_ids=[1, 2, 3])
    metric.update(row(1, 1, 0, 0), row(1, 0, 0, 0), class_id=1)  # class 1: 1/2
    metric.update(row(1, 1, 1, 1), row(1, 1, 1, 1), class_id=2)  # class 2: 4/4
    metric.update(row(1, 0, 0, 0), row(1, 1, 1, 1), class_id=3)  # class 3: 1/4
    metric.update(row(0, 0, 0, 0), row(0, 0, 1, 1), class_id=3)  # class 3 now (1+0)/(4+2) = 1/6
    result = metric.compute()
    assert result["per_class_IoU"] == pytest.approx({"1": 0.5, "2": 1.0, "3": 1 / 6})
    assert result["mIoU"] == pytest.approx((0.5 + 1.0 + 1 / 6) / 3)
    assert result["episodes_per_class"] == {"1": 1, "2": 1, "3": 2}
    assert result["episodes"] == 4


def test_class_without_episodes_is_reported_not_scored_zero() -> None:
    metric = FewShotIoU(class_ids=[1, 2])
    metric.update(row(1, 0), row(1, 0), class_id=1)
    result = metric.compute()
    assert result["classes_without_episodes"] == [2]
    assert result["mIoU"] == pytest.approx(1.0)


def test_unknown_class_and_shape_mismatch_and_non_binary_label_are_clear_errors() -> None:
    metric = FewShotIoU(class_ids=[1])
    with pytest.raises(KeyError, match="not one of this fold"):
        metric.update(row(1), row(1), class_id=5)
    with pytest.raises(ValueError, match="shape"):
        episode_counts(torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="only 0, 1 and 255"):
        episode_counts(row(1, 0), row(1, 3))


def test_prediction_at_original_size_crops_padding_then_upsamples_logits() -> None:
    # A 2×2 valid region inside 4×4 padded logits; the padding says "foreground" loudly and must be cropped away.
    logits = torch.zeros(2, 4, 4)
    logits[1] = 100.0  # padding: foreground
    logits[1, :2, :2] = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # valid region: fg - bg = +1 left, -1 right
    prediction = prediction_at_original_size(logits, valid_hw=(2, 2), original_hw=(2, 4))
    # align_corners bilinear 2 -> 4 columns samples at 0, 1/3, 2/3, 1: values +1, +1/3, -1/3, -1
    assert prediction.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]


def test_prediction_at_original_size_rejects_a_valid_size_larger_than_the_logits() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        prediction_at_original_size(torch.zeros(2, 4, 4), valid_hw=(5, 4), original_hw=(10, 10))


def test_mean_and_std_over_seeds() -> None:
    mean, std = mean_and_std([0.5, 0.7, 0.6])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(0.1)
    assert mean_and_std([0.4]) == (0.4, 0.0)


def test_structure_fill_scores_holes_and_body_and_skips_episodes_without_holes():
    label = torch.zeros(8, 8, dtype=torch.int64)
    label[1:7, 1:7] = 1
    label[3:5, 3:5] = 0  # a 2x2 hole
    label[0, :] = 255
    holes = torch.zeros(8, 8, dtype=torch.bool)
    holes[3:5, 3:5] = True
    filled = torch.zeros(8, 8, dtype=torch.int64)
    filled[1:7, 1:7] = 1  # the outline, hole included: what prototype matching tends to do
    exact = (label == 1).long()
    metric = StructureFill()
    metric.update(filled, label, holes)
    metric.update(exact, label, holes)
    metric.update(exact, label, torch.zeros(8, 8, dtype=torch.bool))  # a class without holes
    result = metric.compute()
    assert result["hole_fill"] == pytest.approx(0.5) and result["hole_episodes"] == 2
    assert result["body_fill"] == pytest.approx(1.0)
    half = torch.zeros(8, 8, dtype=torch.int64)
    half[1:4, 1:7] = 1
    other = StructureFill()
    other.update(half, label, holes)
    assert other.compute()["body_fill"] == pytest.approx(float((half[label == 1] == 1).float().mean()))
    assert StructureFill().compute()["hole_fill"] is None
    with pytest.raises(ValueError, match="same size"):
        other.update(half, label, holes[:4])
