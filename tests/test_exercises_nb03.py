"""Notebook 03's exercise checks pass the library's answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.base import HeadInputs
from dpcn_lite.baselines import PrototypeSegmenter
from dpcn_lite.exercises import ExerciseError, nb03
from dpcn_lite.modules.prototypes import cosine_prior, masked_average_pooling, minmax_normalize


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- masked average pooling -------------------------------------------------------------------------------------------


def map_plain(features, mask, eps=5e-4):
    return (features * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1))


def map_floor(features, mask, eps=5e-4):
    return (features * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).clamp(min=eps)


def map_grid_mean(features, mask, eps=5e-4):
    return (features * mask).mean(dim=(-2, -1))


def map_binarised(features, mask, eps=5e-4):
    hard = (mask > 0).float()
    return (features * hard).sum(dim=(-2, -1)) / (hard.sum(dim=(-2, -1)) + eps)


def map_flattened(features, mask, eps=5e-4):
    return (features * mask).flatten(-3).sum(dim=-1) / (mask.sum() + eps)


def test_map_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_masked_average_pooling(masked_average_pooling)
    assert capsys.readouterr().out.startswith("✓ masked_average_pooling_eps agrees")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (map_plain, "NaN"),
    (map_floor, "ADDS eps"),
    (map_grid_mean, "divided by H \\* W"),
    (map_binarised, "thresholded the mask"),
    (map_flattened, "shape"),
])
def test_map_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb03.check_masked_average_pooling(answer)


# --- cosine map ---------------------------------------------------------------------------------------------------------


def cosine_right(query, prototype, eps=1e-7):
    q = query / (query.norm(dim=1, keepdim=True) + eps)
    p = prototype / (prototype.norm(dim=1, keepdim=True) + eps)
    return (q * p[:, :, None, None]).sum(dim=1, keepdim=True)


def cosine_dot(query, prototype, eps=1e-7):
    return (query * prototype[:, :, None, None]).sum(dim=1, keepdim=True)


def cosine_no_keepdim(query, prototype, eps=1e-7):
    return F.cosine_similarity(query, prototype[:, :, None, None], dim=1, eps=eps)


def cosine_no_eps(query, prototype, eps=1e-7):
    q = query / query.norm(dim=1, keepdim=True)
    p = prototype / prototype.norm(dim=1, keepdim=True)
    return (q * p[:, :, None, None]).sum(dim=1, keepdim=True)


def cosine_query_only(query, prototype, eps=1e-7):
    q = query / (query.norm(dim=1, keepdim=True) + eps)
    return (q * prototype[:, :, None, None]).sum(dim=1, keepdim=True)


@pytest.mark.parametrize("answer", [cosine_right,
                                    lambda q, p, eps=1e-7: F.cosine_similarity(q, p[:, :, None, None], dim=1)[:, None]])
def test_cosine_map_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_cosine_map(answer)
    assert capsys.readouterr().out.startswith("✓ cosine_map")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (cosine_dot, "plain dot product"),
    (cosine_no_keepdim, "keep the channel dimension"),
    (cosine_no_eps, "NaN"),
    (cosine_query_only, "only the query cells are normalised"),
])
def test_cosine_map_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb03.check_cosine_map(answer)


# --- PANet's two-prototype rule --------------------------------------------------------------------------------------


def panet_right(query, support, support_masks, scale=20.0):
    foreground = masked_average_pooling(support, support_masks).mean(dim=1)
    background = masked_average_pooling(support, 1 - support_masks).mean(dim=1)
    cos_fg = F.cosine_similarity(query, foreground[:, :, None, None], dim=1, eps=1e-7)
    cos_bg = F.cosine_similarity(query, background[:, :, None, None], dim=1, eps=1e-7)
    return scale * torch.stack([cos_bg, cos_fg], dim=1)


def panet_swapped(query, support, support_masks, scale=20.0):
    return panet_right(query, support, support_masks, scale).flip(1)


def panet_unscaled(query, support, support_masks, scale=20.0):
    return panet_right(query, support, support_masks, scale) / scale


def panet_same_mask(query, support, support_masks, scale=20.0):
    return panet_right(query, support, torch.ones_like(support_masks) * support_masks, scale)[:, [1, 1]]


def panet_mean_of_shots(query, support, support_masks, scale=20.0):
    k = support.shape[1]
    return torch.stack([panet_right(query, support[:, i:i + 1], support_masks[:, i:i + 1], scale)
                        for i in range(k)]).mean(dim=0)


def test_panet_reference_is_the_prototype_baselines_head() -> None:
    generator = torch.Generator().manual_seed(0)
    model = PrototypeSegmenter("tiny")
    assert math.isclose(float(model.log_scale.detach().exp()), 20.0, rel_tol=1e-6)
    query = torch.randn(2, 5, 4, 6, generator=generator)
    support = torch.randn(2, 3, 5, 4, 6, generator=generator)
    masks = torch.rand(2, 3, 1, 4, 6, generator=generator)
    with torch.no_grad():
        head = model.head(HeadInputs(query, support, query, support, masks), {})
    expected = nb03.panet_logits_reference(query, support, masks, 20.0, model.config.map_eps, model.config.cosine_eps)
    torch.testing.assert_close(head, expected, rtol=1e-5, atol=1e-5)


def test_panet_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_panet_logits(panet_right)
    nb03.check_panet_logits(nb03.panet_logits_reference)
    assert capsys.readouterr().out.count("✓ panet_logits") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (panet_swapped, "swapped"),
    (panet_unscaled, "scale"),
    (panet_same_mask, "both channels use the foreground"),
    (panet_mean_of_shots, "average the K prototypes"),
])
def test_panet_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb03.check_panet_logits(answer)


# --- PFENet's prior ---------------------------------------------------------------------------------------------------


def prior_unmasked(query_high, support_high, support_mask, eps=1e-7):
    return cosine_prior(query_high, support_high, torch.ones_like(support_mask), eps)


def prior_mean(query_high, support_high, support_mask, eps=1e-7):
    s = F.normalize(support_high * support_mask, dim=1, eps=eps).flatten(2)
    q = F.normalize(query_high, dim=1, eps=eps).flatten(2)
    mean = torch.bmm(s.transpose(1, 2), q).mean(dim=1).view(query_high.shape[0], 1, *query_high.shape[-2:])
    return minmax_normalize(mean, eps)


def prior_batch_minmax(query_high, support_high, support_mask, eps=1e-7):
    s = F.normalize(support_high * support_mask, dim=1, eps=eps).flatten(2)
    q = F.normalize(query_high, dim=1, eps=eps).flatten(2)
    best = torch.bmm(s.transpose(1, 2), q).max(dim=1).values.view(query_high.shape[0], 1, *query_high.shape[-2:])
    return (best - best.min()) / (best.max() - best.min() + eps)


def prior_no_eps(query_high, support_high, support_mask, eps=1e-7):
    s = support_high * support_mask
    s = (s / s.norm(dim=1, keepdim=True)).flatten(2)
    q = (query_high / query_high.norm(dim=1, keepdim=True)).flatten(2)
    best = torch.bmm(s.transpose(1, 2), q).max(dim=1).values.view(query_high.shape[0], 1, *query_high.shape[-2:])
    low, high = best.amin(dim=(-2, -1), keepdim=True), best.amax(dim=(-2, -1), keepdim=True)
    return (best - low) / (high - low)


def test_prior_passes_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_cosine_prior(cosine_prior)
    assert capsys.readouterr().out.startswith("✓ cosine_prior agrees")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (prior_unmasked, "mask is not applied"),
    (prior_mean, "max over the support"),
    (prior_batch_minmax, "whole batch"),
    (prior_no_eps, "NaN"),
])
def test_prior_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb03.check_cosine_prior(answer)
