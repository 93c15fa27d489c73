"""DCM: foreground vectors, prototype pooling, kernel generators, grouped dynamic convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.modules.dcm import (
    DynamicConvolutionModule,
    dynamic_depthwise_conv,
    dynamic_depthwise_conv_loop,
    foreground_vectors,
    pool_sequence,
)


def test_grouped_convolution_equals_the_per_sample_loop() -> None:
    torch.manual_seed(0)
    features = torch.randn(4, 8, 11, 9)
    for shape in [(5, 1), (1, 5), (5, 5), (3, 3)]:
        kernels = torch.randn(4, 8, *shape)
        grouped = dynamic_depthwise_conv(features, kernels)
        assert grouped.shape == features.shape
        assert torch.allclose(grouped, dynamic_depthwise_conv_loop(features, kernels), atol=1e-5)


def test_dynamic_convolution_is_per_sample_and_per_channel() -> None:
    """A centred delta kernel is the identity; sample 1's kernel must not touch sample 0."""
    features = torch.randn(2, 3, 6, 6)
    kernels = torch.zeros(2, 3, 5, 5)
    kernels[0, :, 2, 2] = 1.0
    kernels[1, :, 2, 2] = 2.0
    kernels[1, 1, 2, 2] = 0.0
    out = dynamic_depthwise_conv(features, kernels)
    assert torch.allclose(out[0], features[0])
    assert torch.allclose(out[1, 0], 2 * features[1, 0]) and out[1, 1].abs().max() == 0


def test_foreground_vectors_are_in_raster_order_shot_after_shot() -> None:
    support = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)  # K=2, C=1: value = position
    masks = torch.zeros(2, 1, 3, 3)
    masks[0, 0, 0, 2] = masks[0, 0, 2, 0] = 0.9
    masks[1, 0, 1, 1] = 0.7
    masks[1, 0, 0, 0] = 0.5  # not above the 0.5 threshold
    assert foreground_vectors(support, masks).flatten().tolist() == [2.0, 6.0, 13.0]


def test_adaptive_pooling_to_s_and_repetition_for_short_sequences() -> None:
    vectors = torch.arange(10, dtype=torch.float32)[:, None]
    assert pool_sequence(vectors, 5).flatten().tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert pool_sequence(vectors[:2], 4).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def _module(**kwargs) -> DynamicConvolutionModule:
    torch.manual_seed(0)
    return DynamicConvolutionModule(channels=4, kernel_size=5, **kwargs)


def test_literal_square_prototypes_repeat_p_s_and_direct_ones_pool_all_vectors() -> None:
    support = torch.randn(1, 1, 4, 10, 10)
    masks = torch.ones(1, 1, 1, 10, 10)
    fallback = torch.zeros(1, 4)
    p_s, p_s2, counts = _module(square_prototypes="literal").prototypes(support, masks, fallback)
    assert p_s.shape == (1, 4, 5) and p_s2.shape == (1, 4, 25) and counts.tolist() == [100]
    assert torch.allclose(p_s2, p_s.repeat_interleave(5, dim=2))
    _, direct, _ = _module(square_prototypes="direct").prototypes(support, masks, fallback)
    expected = F.adaptive_avg_pool1d(support[0, 0].flatten(1)[None], 25)
    assert torch.allclose(direct, expected, atol=1e-6)


def test_k_shot_pools_the_vectors_of_all_shots_together() -> None:
    support = torch.randn(1, 2, 4, 6, 6)
    masks = (torch.rand(1, 2, 1, 6, 6) > 0.5).float()
    p_s, _, counts = _module().prototypes(support, masks, torch.zeros(1, 4))
    vectors = torch.cat([support[0, k].permute(1, 2, 0)[masks[0, k, 0] > 0.5] for k in range(2)])
    assert counts.item() == vectors.shape[0]
    assert torch.allclose(p_s[0], F.adaptive_avg_pool1d(vectors.t()[None], 5)[0], atol=1e-6)


@pytest.mark.parametrize("fallback", ["map", "mean"])
def test_no_foreground_vector_uses_the_documented_fallback(fallback: str) -> None:
    support = torch.randn(1, 1, 4, 6, 6)
    masks = torch.full((1, 1, 1, 6, 6), 0.2)  # soft mask present, but nothing above 0.5
    map_prototype = torch.randn(1, 4)
    p_s, p_s2, counts = _module(fallback=fallback).prototypes(support, masks, map_prototype)
    expected = map_prototype[0] if fallback == "map" else support[0].mean(dim=(0, 2, 3))
    assert counts.tolist() == [0]
    assert torch.allclose(p_s[0], expected[:, None].expand(4, 5))
    assert torch.isfinite(p_s2).all()


def test_kernels_have_the_paper_shapes_and_unshared_generators() -> None:
    module = _module()
    query = torch.randn(2, 4, 7, 7)
    intermediates: dict = {}
    responses = module(query, torch.randn(2, 1, 4, 7, 7), torch.ones(2, 1, 1, 7, 7), torch.zeros(2, 4), intermediates)
    assert [r.shape for r in responses] == [query.shape] * 3
    assert intermediates["kernel_v"].shape == (2, 4, 5, 1)
    assert intermediates["kernel_h"].shape == (2, 4, 1, 5)
    assert intermediates["kernel_s"].shape == (2, 4, 5, 5)
    weights = [module.generators[n][0].weight for n in "vhs"]
    assert weights[0].data_ptr() != weights[1].data_ptr() != weights[2].data_ptr()
    assert torch.allclose(responses[2], dynamic_depthwise_conv_loop(query, intermediates["kernel_s"]), atol=1e-5)


def test_kernel_subset_and_bad_names() -> None:
    module = DynamicConvolutionModule(4, 3, kernels=("h",))
    assert list(module.generators) == ["h"]
    with pytest.raises(ValueError, match="subset"):
        DynamicConvolutionModule(4, 3, kernels=("x",))
