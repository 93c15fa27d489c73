"""``mask_support_high`` (PFENet): the support's layer4 runs on layer3 times the resized mask; the query's does not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.base import FewShotSegmenter, HeadInputs
from dpcn_lite.config import PRESETS, get_preset
from dpcn_lite.model import HEADS, build_model
from dpcn_lite.utils import seed_everything

SIZE = 64


def _episode(batch: int = 2, shots: int = 2, seed: int = 0) -> dict:
    """Shots with different masks, so a mask mixed up between shots shows."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(batch, shots, SIZE, SIZE, dtype=torch.long)
    for shot in range(shots):
        masks[:, shot, 8 + 6 * shot : 40 + 4 * shot, 16 : 44 - 3 * shot] = 1
    masks[..., :6, :] = 255  # ignore counts as background
    return {
        "query_image": torch.randn(batch, 3, SIZE, SIZE, generator=generator),
        "support_images": torch.randn(batch, shots, 3, SIZE, SIZE, generator=generator),
        "support_masks": masks,
        "query_mask": masks[:, 0].clone(),
    }


def _model(name: str = "dpcn", **overrides) -> FewShotSegmenter:
    seed_everything(0)
    return build_model(name, get_preset("tiny", **overrides)).eval()


def _record_head_inputs(model: FewShotSegmenter) -> list[HeadInputs]:
    """Every HeadInputs the head receives, in call order (main pass first, then the reverse pass)."""
    seen: list[HeadInputs] = []
    head = model.head

    def recording(inputs: HeadInputs, intermediates: dict) -> torch.Tensor:
        seen.append(inputs)
        return head(inputs, intermediates)

    model.head = recording  # type: ignore[method-assign]
    return seen


def _by_hand(model: FewShotSegmenter, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The tiny backbone stage by stage: layer4(layer3 * mask), the mask (label == 1) bilinear to the grid."""
    backbone = model.backbone
    with torch.no_grad():
        layer3 = backbone.stage2(backbone.stage1(images))
        if labels is not None:
            mask = F.interpolate((labels == 1).float()[:, None], size=layer3.shape[-2:], mode="bilinear",
                                 align_corners=True)
            layer3 = layer3 * mask
        return backbone.high_stage(layer3)


def test_the_paper_preset_masks_the_support_and_the_default_does_not() -> None:
    assert get_preset("paper").mask_support_high and PRESETS["paper"]["mask_support_high"] is True
    assert not get_preset("cpu").mask_support_high and not get_preset("tiny").mask_support_high
    with pytest.raises(ValueError, match="mask_support_high"):
        get_preset("tiny", mask_support_high="yes")


@pytest.mark.parametrize("name, fusion", [(name, "pool") for name in HEADS] + [("dpcn", "mask_avg")])
def test_support_high_features_are_layer4_of_the_masked_layer3_for_every_shot(name: str, fusion: str) -> None:
    model = _model(name, mask_support_high=True, kshot_fusion=fusion)
    episode = _episode(shots=2)
    seen = _record_head_inputs(model)
    with torch.no_grad():
        model(episode["query_image"], episode["support_images"], episode["support_masks"])
    (inputs,) = seen
    support_high = inputs.support_high.reshape(2, 2, 32, 8, 8)  # "mask_avg" runs B K one-shot episodes
    query_high = inputs.query_high.reshape(2, -1, 32, 8, 8)
    for shot in range(2):
        expected = _by_hand(model, episode["support_images"][:, shot], episode["support_masks"][:, shot])
        torch.testing.assert_close(support_high[:, shot], expected, rtol=1e-5, atol=1e-6)
        # The query's layer4 sees the whole image.
        torch.testing.assert_close(query_high[:, -1], _by_hand(model, episode["query_image"], None),
                                   rtol=1e-5, atol=1e-6)


def test_a_support_without_foreground_gives_layer4_of_zeros_whatever_its_pixels() -> None:
    model = _model(mask_support_high=True)
    episode = _episode(shots=1)
    episode["support_masks"][episode["support_masks"] == 1] = 0  # background and ignore only
    seen = _record_head_inputs(model)
    with torch.no_grad():
        model(episode["query_image"], episode["support_images"], episode["support_masks"])
        model(episode["query_image"], torch.randn_like(episode["support_images"]) * 3, episode["support_masks"])
        of_zeros = model.backbone.high_stage(torch.zeros(2, model.backbone.high_input_channels, 8, 8))
    assert torch.equal(seen[0].support_high[:, 0], of_zeros) and torch.equal(seen[1].support_high[:, 0], of_zeros)


def test_switched_off_the_support_keeps_its_unmasked_layer4() -> None:
    model = _model(mask_support_high=False)
    episode = _episode(shots=2)
    seen = _record_head_inputs(model)
    with torch.no_grad():
        model(episode["query_image"], episode["support_images"], episode["support_masks"])
        unmasked = model.backbone(episode["support_images"].flatten(0, 1)).high.view(2, 2, 32, 8, 8)
    assert torch.equal(seen[0].support_high, unmasked)
    masked = _by_hand(model, episode["support_images"][:, 0], episode["support_masks"][:, 0])
    assert not torch.allclose(seen[0].support_high[:, 0], masked)


def test_the_switch_changes_the_prediction_only_through_the_support_high_features() -> None:
    on, off = _model(mask_support_high=True), _model(mask_support_high=False)
    off.load_state_dict(on.state_dict())
    episode = _episode(shots=2)
    with torch.no_grad():
        a = on(episode["query_image"], episode["support_images"], episode["support_masks"]).logits
        b = off(episode["query_image"], episode["support_images"], episode["support_masks"]).logits
    assert not torch.allclose(a, b)
    off.config = off.config.replace(mask_support_high=True)  # the same weights, the switch flipped
    with torch.no_grad():
        assert torch.equal(off(episode["query_image"], episode["support_images"], episode["support_masks"]).logits, a)


def test_reverse_pass_masks_the_query_by_its_prediction_and_leaves_the_support_queries_unmasked() -> None:
    """The query becomes a support masked by its predicted mask; each support image becomes a query, unmasked
    (its own label must not leak into its features)."""
    model = _model(mask_support_high=True)
    episode = _episode(shots=2)
    seen = []
    head = model.head

    def predicting_some_foreground(inputs: HeadInputs, intermediates: dict) -> torch.Tensor:
        seen.append(inputs)
        logits = head(inputs, intermediates)
        if len(seen) == 1:  # the main pass: foreground in the upper left quarter only, so the reverse pass runs
            logits = logits.clone()
            logits[:, 0] += 100.0
            logits[:, 1, :4, :4] += 200.0
        return logits

    model.head = predicting_some_foreground  # type: ignore[method-assign]
    losses = model.loss(episode)
    assert losses["reverse_episodes"] == 2 and len(seen) == 2
    reverse = seen[1]
    predicted = losses["logits"].argmax(dim=1)  # B x H x W, used as the query's support mask
    assert 0 < predicted.float().mean() < 0.5
    expected_support = _by_hand(model, episode["query_image"], predicted).repeat_interleave(2, dim=0)
    expected_query = _by_hand(model, episode["support_images"].flatten(0, 1), None)
    torch.testing.assert_close(reverse.support_high[:, 0], expected_support, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reverse.query_high, expected_query, rtol=1e-5, atol=1e-6)
