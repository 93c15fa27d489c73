"""Notebook 00's exercise checks pass right answers and name the usual mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_utils import binarize
from dpcn_lite.exercises import ExerciseError, nb00
from dpcn_lite.metrics import episode_counts


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- foreground_fraction --------------------------------------------------------------------------------------------


def fraction(label):
    evaluated = label != 255
    return float((label[evaluated] == 1).sum() / evaluated.sum())


def fraction_of_all_pixels(label):
    return float((label == 1).mean())


def fraction_counting_ignore(label):
    return float((label > 0).sum() / (label != 255).sum())


def fraction_as_count(label):
    return int((label == 1).sum())


def test_foreground_fraction_passes_a_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb00.check_foreground_fraction(fraction)
    assert capsys.readouterr().out.startswith("✓ foreground_fraction")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (fraction_of_all_pixels, "divided by every pixel"),
    (fraction_counting_ignore, "counted the 255 pixels as foreground"),
    (fraction_as_count, "returned the count"),
])
def test_foreground_fraction_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb00.check_foreground_fraction(answer)


# --- foreground_iou -------------------------------------------------------------------------------------------------


def iou(prediction, label):
    return episode_counts(prediction, label).fg_iou


def iou_by_hand(prediction, label):
    valid = label != 255
    pred, true = (prediction == 1) & valid, (label == 1) & valid
    union = (pred | true).sum()
    return float((pred & true).sum() / union) if union else math.nan


def iou_keeping_ignore(prediction, label):
    pred, true = prediction == 1, label == 1
    union = (pred | true).sum()
    return float((pred & true).sum() / union) if union else math.nan


def iou_as_precision(prediction, label):
    valid = label != 255
    pred, true = (prediction == 1) & valid, (label == 1) & valid
    return float((pred & true).sum() / max(pred.sum(), 1)) if (pred | true).any() else math.nan


def iou_zero_for_nothing(prediction, label):
    value = iou_by_hand(prediction, label)
    return 0.0 if math.isnan(value) else value


def pixel_accuracy(prediction, label):
    return float((prediction == label).mean())


def test_foreground_iou_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb00.check_foreground_iou(iou)
    nb00.check_foreground_iou(iou_by_hand)
    assert capsys.readouterr().out.count("✓ foreground_iou") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (iou_keeping_ignore, "label is 255"),
    (iou_as_precision, "precision"),
    (iou_zero_for_nothing, "expected nan"),
    (pixel_accuracy, "pixel accuracy"),
])
def test_foreground_iou_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb00.check_foreground_iou(answer)


# --- one_shot_episode -----------------------------------------------------------------------------------------------


def episode(source, class_id, query_id, support_id):
    if support_id == query_id:
        raise ValueError("the support must not be the query")
    support_image, support_label = source.load(support_id)
    query_image, query_label = source.load(query_id)
    return {"support_image": support_image, "support_mask": binarize(support_label, class_id),
            "query_image": query_image, "query_mask": binarize(query_label, class_id)}


def episode_raw_labels(source, class_id, query_id, support_id):
    out = episode(source, class_id, query_id, support_id)
    out["query_mask"] = source.load(query_id)[1]
    return out


def episode_ignore_dropped(source, class_id, query_id, support_id):
    out = episode(source, class_id, query_id, support_id)
    for key in ("support_mask", "query_mask"):
        out[key] = (out[key] == 1).astype(np.uint8)
    return out


def episode_swapped(source, class_id, query_id, support_id):
    return episode(source, class_id, support_id, query_id)


def episode_all_classes(source, class_id, query_id, support_id):
    out = episode(source, class_id, query_id, support_id)
    label = source.load(support_id)[1]
    mask = ((label != 0) & (label != 255)).astype(np.uint8)
    mask[label == 255] = 255
    out["support_mask"] = mask
    return out


def _no_refusal(source, class_id, query_id, support_id):
    support_image, support_label = source.load(support_id)
    query_image, query_label = source.load(query_id)
    return {"support_image": support_image, "support_mask": binarize(support_label, class_id),
            "query_image": query_image, "query_mask": binarize(query_label, class_id)}


def test_one_shot_episode_passes_a_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb00.check_one_shot_episode(episode)
    assert capsys.readouterr().out.startswith("✓ one_shot_episode")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (episode_raw_labels, "raw label"),
    (episode_ignore_dropped, "255"),
    (episode_swapped, "swapped"),
    (episode_all_classes, "only pixels labelled class_id"),
    (_no_refusal, "raise ValueError"),
])
def test_one_shot_episode_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb00.check_one_shot_episode(answer)
