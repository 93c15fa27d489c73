"""The fusion decoder (paper Eq. 9-10): F_conv, ASPP, the residual block, F_cls, and upsampling to the input size."""

from __future__ import annotations

import torch

from dpcn_lite.modules.decoder import ASPP, Decoder, upsample_logits


def test_decoder_maps_fused_features_to_two_logits_at_feature_resolution() -> None:
    decoder = Decoder(in_channels=4 * 8 + 4, channels=8, dilations=(1, 2, 3))
    logits = decoder(torch.randn(2, 36, 9, 9))
    assert logits.shape == (2, 2, 9, 9)
    assert decoder.fuse[0].in_channels == 36 and decoder.fuse[0].bias is None  # F_conv: 1x1 without bias
    assert decoder.classifier[-1].out_channels == 2


def test_aspp_has_one_branch_per_dilation_and_a_global_branch_constant_over_the_grid() -> None:
    aspp = ASPP(6, dilations=(1, 2, 4))
    assert [branch[0].dilation for branch in aspp.dilated_branches] == [(1, 1), (2, 2), (4, 4)]
    assert aspp.project[0].in_channels == 6 * (2 + 3)
    x = torch.randn(1, 6, 7, 7)
    pooled = aspp.global_branch(torch.nn.functional.adaptive_avg_pool2d(x, 1))
    assert aspp(x).shape == (1, 6, 7, 7)
    # the global branch only sees the mean: moving pixels around leaves it unchanged
    shuffled = x.flatten(2)[..., torch.randperm(49)].view_as(x)
    assert torch.allclose(aspp.global_branch(torch.nn.functional.adaptive_avg_pool2d(shuffled, 1)), pooled, atol=1e-6)


def test_dropout_acts_only_in_training_mode() -> None:
    torch.manual_seed(0)
    decoder = Decoder(in_channels=10, channels=8, dilations=(1, 2), dropout=0.5)
    x = torch.randn(2, 10, 6, 6)
    decoder.eval()
    assert torch.equal(decoder(x), decoder(x))
    decoder.train()
    assert not torch.equal(decoder(x), decoder(x))


def test_upsampling_keeps_corners_and_is_a_no_op_at_the_same_size() -> None:
    logits = torch.randn(2, 2, 9, 9)
    up = upsample_logits(logits, (65, 65))
    assert up.shape == (2, 2, 65, 65)
    # align_corners=True keeps the corner values.
    assert torch.allclose(up[..., 0, 0], logits[..., 0, 0]) and torch.allclose(up[..., -1, -1], logits[..., -1, -1])
    assert upsample_logits(logits, (9, 9)) is logits
