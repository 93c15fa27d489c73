"""Notebook 05's exercise checks pass the library's answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpcn_lite.exercises import ExerciseError, nb05
from dpcn_lite.modules.ffm import FeatureFilteringModule
from dpcn_lite.modules.prototypes import expand_prototype


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- FeatureFilteringModule.forward ---------------------------------------------------------------------------------------------------


def ffm_forward(query, prototype, pseudo_mask, conv):
    refined = torch.sigmoid(conv(query * pseudo_mask + expand_prototype(prototype, tuple(query.shape[-2:]))))
    return query * refined + query, refined


def ffm_no_sigmoid(query, prototype, pseudo_mask, conv):
    refined = conv(query * pseudo_mask + expand_prototype(prototype, tuple(query.shape[-2:])))
    return query * refined + query, refined


def ffm_no_residual(query, prototype, pseudo_mask, conv):
    filtered, refined = ffm_forward(query, prototype, pseudo_mask, conv)
    return query * refined, refined


def ffm_no_gate(query, prototype, pseudo_mask, conv):
    refined = torch.sigmoid(conv(query + expand_prototype(prototype, tuple(query.shape[-2:]))))
    return query * refined + query, refined


def ffm_prototype_after_conv(query, prototype, pseudo_mask, conv):
    refined = torch.sigmoid(conv(query * pseudo_mask) + prototype.mean(dim=1)[:, None, None, None])
    return query * refined + query, refined


def ffm_swapped(query, prototype, pseudo_mask, conv):
    filtered, refined = ffm_forward(query, prototype, pseudo_mask, conv)
    return refined, filtered


def module_from(forward):
    """An FFM class like the notebook's exercise cell, whose forward is ``forward(..., self.mask_conv)``."""

    class Answer(nn.Module):
        def __init__(self, channels, kernel_size=3):
            super().__init__()
            self.mask_conv = nn.Conv2d(channels, 1, kernel_size, padding=kernel_size // 2)

        def forward(self, query, prototype, pseudo_mask):
            return forward(query, prototype, pseudo_mask, self.mask_conv)

    return Answer


class RenamedConv(nn.Module):
    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size, padding=kernel_size // 2)


@pytest.mark.parametrize("answer", [module_from(ffm_forward), FeatureFilteringModule])
def test_ffm_module_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb05.check_ffm_module(answer)
    assert capsys.readouterr().out.startswith("✓ FeatureFilteringModule")


@pytest.mark.parametrize(("answer", "words"), [
    (module_from(stub), "not done yet"),
    (RenamedConv, "named mask_conv"),
    (module_from(ffm_no_sigmoid), "did you apply the sigmoid"),
    (module_from(ffm_no_residual), "keeps a residual"),
    (module_from(ffm_no_gate), "gate the query with the pseudo mask"),
    (module_from(ffm_prototype_after_conv), "BEFORE the convolution"),
    (module_from(ffm_swapped), "in that order"),
])
def test_ffm_module_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb05.check_ffm_module(answer)


# --- object_background_gain -----------------------------------------------------------------------------------------


def gain(refined, labels):
    out = []
    for mask, label in zip(refined[:, 0], labels):
        out.append((1 + mask[label == 1]).mean() / (1 + mask[label == 0]).mean())
    return torch.stack(out)


def gain_without_one(refined, labels):
    out = []
    for mask, label in zip(refined[:, 0], labels):
        out.append(mask[label == 1].mean() / mask[label == 0].mean())
    return torch.stack(out)


def gain_ignore_is_background(refined, labels):
    out = []
    for mask, label in zip(refined[:, 0], labels):
        out.append((1 + mask[label == 1]).mean() / (1 + mask[label != 1]).mean())
    return torch.stack(out)


def gain_pooled_over_batch(refined, labels):
    masks = refined[:, 0]
    value = (1 + masks[labels == 1]).mean() / (1 + masks[labels == 0]).mean()
    return value.expand(refined.shape[0])


def gain_one_number(refined, labels):
    return gain(refined, labels).mean()


def test_object_background_gain_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb05.check_object_background_gain(gain)
    assert capsys.readouterr().out.startswith("✓ object_background_gain")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (gain_without_one, "values differ"),
    (gain_ignore_is_background, "labelled 255 count as neither"),
    (gain_pooled_over_batch, "one episode at a time"),
    (gain_one_number, "one gain per episode"),
])
def test_object_background_gain_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb05.check_object_background_gain(answer)


# --- logit_parts ----------------------------------------------------------------------------------------------------


def logit_parts(query, prototype, pseudo_mask, conv):
    expanded = expand_prototype(prototype, tuple(query.shape[-2:]))
    return conv(query * pseudo_mask), F.conv2d(expanded, conv.weight, bias=None, padding=conv.padding)


def parts_bias_twice(query, prototype, pseudo_mask, conv):
    return conv(query * pseudo_mask), conv(expand_prototype(prototype, tuple(query.shape[-2:])))


def parts_no_padding(query, prototype, pseudo_mask, conv):
    expanded = expand_prototype(prototype, tuple(query.shape[-2:]))
    return conv(query * pseudo_mask), F.conv2d(expanded, conv.weight)


def parts_ungated(query, prototype, pseudo_mask, conv):
    expanded = expand_prototype(prototype, tuple(query.shape[-2:]))
    return conv(query), F.conv2d(expanded, conv.weight, bias=None, padding=conv.padding)


def test_logit_parts_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb05.check_logit_parts(logit_parts)
    assert capsys.readouterr().out.startswith("✓ logit_parts")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (parts_bias_twice, "includes the bias"),
    (parts_no_padding, r"shape \(2, 1, 3, 5\), expected \(2, 1, 5, 7\)"),
    (parts_ungated, "query part: values differ"),
])
def test_logit_parts_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb05.check_logit_parts(answer)
