"""k-shot fusion of per-shot predictions (``dpcn_lite.kshot``): the three rules, the logits they return, shot order."""

from __future__ import annotations

import pytest
import torch

from dpcn_lite.config import get_preset
from dpcn_lite.kshot import FUSED_PROBABILITY_EPS, fuse_probabilities, fuse_shot_logits, per_shot, repeat_per_shot
from dpcn_lite.model import DPCN
from dpcn_lite.utils import seed_everything

# one episode, three shots, two pixels
PROBABILITIES = torch.tensor([[[[0.9, 0.2]], [[0.6, 0.1]], [[0.2, 0.7]]]])  # 1 x 3 x 1 x 2


def test_mask_average_and_or() -> None:
    assert torch.allclose(fuse_probabilities(PROBABILITIES, "mask_avg"), torch.tensor([[[1.7 / 3, 1.0 / 3]]]))
    assert torch.equal(fuse_probabilities(PROBABILITIES, "or"), torch.tensor([[[0.9, 0.7]]]))


def test_vote_keeps_pixels_with_at_least_half_the_largest_vote_count() -> None:
    # votes: pixel 0 -> 2 shots, pixel 1 -> 1 shot; the largest count is 2, so both reach half of it
    assert torch.equal(fuse_probabilities(PROBABILITIES, "vote"), torch.tensor([[[1.0, 1.0]]]))
    four = torch.tensor([[[[0.9, 0.9, 0.2]], [[0.8, 0.1, 0.1]], [[0.7, 0.1, 0.1]], [[0.6, 0.1, 0.1]]]])
    assert torch.equal(fuse_probabilities(four, "vote"), torch.tensor([[[1.0, 0.0, 0.0]]]))  # 4 votes vs 1 and 0
    assert torch.equal(fuse_probabilities(torch.zeros(1, 2, 1, 2), "vote"), torch.zeros(1, 1, 2))  # nobody votes


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="kshot_fusion"):
        fuse_probabilities(PROBABILITIES, "max")


@pytest.mark.parametrize("mode", ["mask_avg", "vote", "or"])
def test_fused_logits_carry_the_fused_probability(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2 * 3, 2, 4, 5, generator=g)  # (B K) x 2 x h x w
    intermediates: dict[str, torch.Tensor] = {}
    fused = fuse_shot_logits(logits, 3, mode, intermediates)
    probabilities = logits.softmax(1)[:, 1].view(2, 3, 4, 5)
    assert torch.equal(intermediates["shot_probabilities"], probabilities)
    expected = fuse_probabilities(probabilities, mode).clamp(FUSED_PROBABILITY_EPS, 1 - FUSED_PROBABILITY_EPS)
    assert fused.shape == (2, 2, 4, 5)
    assert torch.allclose(fused.softmax(1)[:, 1], expected, atol=1e-5)
    assert torch.isfinite(fused).all()


def test_per_shot_and_repeat_per_shot_line_up() -> None:
    supports = torch.arange(2 * 3).view(2, 3, 1)  # episode b, shot k holds 3b + k
    queries = torch.tensor([[10], [20]])
    assert per_shot(supports).flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert repeat_per_shot(queries, 3).flatten().tolist() == [10, 10, 10, 20, 20, 20]


def test_the_model_fuses_its_own_one_shot_predictions() -> None:
    seed_everything(0)
    model = DPCN(get_preset("tiny", kshot_fusion="mask_avg")).eval()
    g = torch.Generator().manual_seed(1)
    query, supports = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 3, 64, 64, generator=g)
    masks = torch.randint(0, 2, (2, 3, 64, 64), generator=g)
    with torch.no_grad():
        fused = model(query, supports, masks, return_intermediates=True).intermediates
        alone = [model(query, supports[:, k], masks[:, k], return_intermediates=True).intermediates["logits_low"]
                 for k in range(3)]
    shots = torch.stack([logits.softmax(1)[:, 1] for logits in alone], dim=1)  # B x K x h x w
    assert torch.allclose(fused["shot_probabilities"], shots, atol=1e-6)
    assert torch.allclose(fused["logits_low"].softmax(1)[:, 1], shots.mean(1), atol=1e-5)
