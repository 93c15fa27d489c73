"""The objective of ``dpcn_lite.losses``: main loss, reverse loss and their sum, on hand-made features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.backbones import BackboneFeatures, EpisodeFeatures
from dpcn_lite.losses import episode_objective, predicted_support_masks, reverse_loss, segmentation_loss


def episode_features(b: int = 2, k: int = 3, c: int = 4, hw: int = 5) -> EpisodeFeatures:
    g = torch.Generator().manual_seed(0)
    query = BackboneFeatures(torch.randn(b, c, hw, hw, generator=g), torch.randn(b, c + 1, hw, hw, generator=g))
    support = BackboneFeatures(torch.randn(b, k, c, hw, hw, generator=g), torch.randn(b, k, c + 1, hw, hw, generator=g))
    return EpisodeFeatures(query, support)


class RecordingSegment:
    """A stand-in head: logits from the query's mid features, and a record of every call."""

    def __init__(self, foreground: bool = True) -> None:
        self.calls: list[tuple] = []
        self.foreground = foreground

    def __call__(self, query, support, masks, image_hw):
        self.calls.append((query, support, masks, image_hw))
        score = query.mid.mean(dim=1, keepdim=True)
        score = score if self.foreground else score - 1e3
        logits = torch.cat([torch.zeros_like(score), score], dim=1)
        return F.interpolate(logits, size=image_hw, mode="nearest")


def test_main_loss_is_cross_entropy_with_ignore_and_equals_bce_on_the_foreground() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 6, 6, generator=g)
    labels = torch.randint(0, 2, (2, 6, 6), generator=g)
    labels[0, :2] = 255
    loss = segmentation_loss(logits, labels)
    assert torch.allclose(loss, F.cross_entropy(logits, labels, ignore_index=255))
    valid = labels != 255
    foreground_logit = (logits[:, 1] - logits[:, 0])[valid]
    bce = F.binary_cross_entropy_with_logits(foreground_logit, labels[valid].float())
    assert torch.allclose(loss, bce, atol=1e-6)


def test_all_ignored_labels_give_zero_attached_to_the_graph() -> None:
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_label_size_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 5))


def test_predicted_support_masks_are_the_argmax_and_flag_empty_predictions() -> None:
    logits = torch.zeros(2, 2, 3, 3)
    logits[0, 1, 1, 1] = 1.0
    masks, non_empty = predicted_support_masks(logits)
    assert masks[0].sum() == 1 and masks[1].sum() == 0
    assert non_empty.tolist() == [True, False]


def test_reverse_loss_swaps_query_and_supports() -> None:
    features = episode_features(b=2, k=3)
    segment = RecordingSegment()
    logits = segment(features.query, features.support, None, (5, 5))
    support_masks = torch.randint(0, 2, (2, 3, 5, 5))
    segment.calls.clear()
    loss, used = reverse_loss(segment, features, logits, support_masks)
    assert used == 2 and torch.isfinite(loss)
    (query, support, masks, image_hw), = segment.calls
    # every support image becomes a query; the query (repeated once per shot) becomes the 1-shot support
    assert torch.equal(query.mid, features.support.mid.flatten(0, 1))
    assert torch.equal(support.mid[:, 0], features.query.mid.repeat_interleave(3, dim=0))
    assert torch.equal(masks[:, 0], logits.argmax(1).repeat_interleave(3, dim=0))
    expected = segmentation_loss(segment(query, support, masks, image_hw), support_masks.flatten(0, 1))
    assert torch.allclose(loss, expected)


def test_reverse_loss_skips_episodes_whose_prediction_is_empty() -> None:
    features = episode_features(b=2, k=1)
    segment = RecordingSegment(foreground=False)
    logits = segment(features.query, features.support, None, (5, 5))
    segment.calls.clear()
    loss, used = reverse_loss(segment, features, logits, torch.ones(2, 1, 5, 5, dtype=torch.long))
    assert (loss.item(), used) == (0.0, 0) and not segment.calls


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_the_objective_is_main_plus_lambda_reverse(weight: float) -> None:
    features = episode_features(b=2, k=2)
    query_mask = torch.randint(0, 2, (2, 5, 5))
    support_masks = torch.randint(0, 2, (2, 2, 5, 5))
    segment = RecordingSegment()
    out = episode_objective(segment, features, query_mask, support_masks, reverse_weight=weight)
    assert set(out) == {"loss", "main", "reverse", "logits", "reverse_episodes"}
    assert torch.allclose(out["loss"], out["main"] + weight * out["reverse"])
    assert torch.allclose(out["main"], segmentation_loss(out["logits"], query_mask))
    if weight == 0.0:
        assert len(segment.calls) == 1 and out["reverse"].item() == 0.0 and out["reverse_episodes"] == 0
    else:
        expected, used = reverse_loss(RecordingSegment(), features, out["logits"], support_masks)
        assert torch.allclose(out["reverse"], expected) and out["reverse_episodes"] == used == 2
