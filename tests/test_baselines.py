"""The two baselines: what they compute, and that they train with the shared loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dpcn_lite.baselines import PriorMaskSegmenter, PrototypeSegmenter
from dpcn_lite.base import HeadInputs
from dpcn_lite.config import get_preset


def test_prototype_head_is_scaled_cosine_to_background_and_foreground_prototypes() -> None:
    model = PrototypeSegmenter(get_preset("tiny"))
    c = model.config.channels
    support = torch.zeros(1, 1, c, 2, 2)
    support[0, 0, 0, 0, 0] = 1.0  # the foreground pixel points along channel 0
    support[0, 0, 1, 1, 1] = 1.0  # a background pixel along channel 1
    mask = torch.zeros(1, 1, 1, 2, 2)
    mask[0, 0, 0, 0, 0] = 1.0
    query = torch.zeros(1, c, 1, 2)
    query[0, 0, 0, 0] = 3.0  # like the foreground
    query[0, 1, 0, 1] = 2.0  # like the background
    inputs = HeadInputs(query, support, torch.zeros(1, 4, 1, 2), torch.zeros(1, 1, 4, 2, 2), mask)
    logits = model.head(inputs, {})
    # foreground prototype ~ e0, background prototype ~ e1 (mean of three pixels, one of them e1): cosines are 1 or 0
    assert torch.allclose(logits[0, :, 0, 0], torch.tensor([0.0, 20.0]), atol=1e-3)
    assert torch.allclose(logits[0, :, 0, 1], torch.tensor([20.0, 0.0]), atol=1e-3)


def test_prior_head_uses_the_cosine_prior_and_averages_it_over_shots() -> None:
    torch.manual_seed(0)
    model = PriorMaskSegmenter(get_preset("tiny")).eval()
    query = torch.randn(2, 3, 64, 64)
    supports = torch.randn(2, 3, 3, 64, 64)
    masks = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    masks[:, :, 16:48, 16:48] = 1
    out = model(query, supports, masks, return_intermediates=True)
    assert out.logits.shape == (2, 2, 64, 64)
    prior = out.intermediates["prior"]
    assert prior.shape == (2, 1, 8, 8) and float(prior.min()) >= 0.0 and float(prior.max()) <= 1.0 + 1e-6


def test_both_baselines_learn_with_the_shared_loss() -> None:
    torch.manual_seed(0)
    query = torch.randn(2, 3, 64, 64)
    supports = torch.randn(2, 1, 3, 64, 64)
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    mask[:, 20:44, 20:44] = 1
    batch = {"query_image": query, "support_images": supports, "support_masks": mask[:, None], "query_mask": mask}
    for cls in (PrototypeSegmenter, PriorMaskSegmenter):
        model = cls(get_preset("tiny", reduction_dropout=0.0, classifier_dropout=0.0)).train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
        first = model.loss(batch)
        assert set(first) >= {"loss", "main", "reverse", "logits"}
        for _ in range(15):
            out = model.loss(batch)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
        assert out["main"].item() < first["main"].item(), cls.__name__
