"""Notebook 01's exercise checks pass right answers and name the usual mistakes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from data_utils import binarize
from data_utils.sources import qualifying_classes
from dpcn_lite.exercises import ExerciseError, nb01


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- fold_of_class --------------------------------------------------------------------------------------------------


def fold_of_class(dataset, class_id):
    return (class_id - 1) % 4 if dataset == "coco" else (class_id - 1) // 5


def fold_off_by_one(dataset, class_id):
    return class_id % 4 if dataset == "coco" else class_id // 5


def fold_consecutive_coco(dataset, class_id):
    return (class_id - 1) // (20 if dataset == "coco" else 5)


def fold_as_float(dataset, class_id):
    return float(fold_of_class(dataset, class_id))


def test_fold_of_class_passes_a_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb01.check_fold_of_class(fold_of_class)
    assert capsys.readouterr().out.startswith("✓ fold_of_class")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (fold_off_by_one, "off-by-one"),
    (fold_consecutive_coco, "consecutive rule"),
    (fold_as_float, "return an int"),
])
def test_fold_of_class_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb01.check_fold_of_class(answer)


# --- binarize -------------------------------------------------------------------------------------------------------


def binarize_by_hand(label, class_id):
    out = (label == class_id).astype(np.uint8)
    out[label == 255] = 255
    return out


def binarize_dropping_ignore(label, class_id):
    return (label == class_id).astype(np.uint8)


def binarize_every_class(label, class_id):
    out = ((label != 0) & (label != 255)).astype(np.uint8)
    out[label == 255] = 255
    return out


def binarize_in_place(label, class_id):
    keep = label == 255
    label[(label != class_id) & ~keep] = 0
    label[label == class_id] = 1
    return label


def binarize_class_value(label, class_id):
    out = np.where(label == class_id, class_id, 0).astype(np.uint8)
    out[label == 255] = 255
    return out


def binarize_int64(label, class_id):
    return binarize(label, class_id).astype(np.int64)


def test_binarize_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb01.check_binarize(binarize)
    nb01.check_binarize(binarize_by_hand)
    assert capsys.readouterr().out.count("✓ binarize") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (binarize_dropping_ignore, "must stay 255"),
    (binarize_every_class, "every class became 1"),
    (binarize_in_place, "changed the label"),
    (binarize_class_value, "must hold 1"),
    (binarize_int64, "dtype is int64"),
])
def test_binarize_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb01.check_binarize(answer)


# --- qualifying_classes ---------------------------------------------------------------------------------------------


def qualifying(label, min_pixels):
    return qualifying_classes(label, 254, min_pixels)


def qualifying_by_hand(label, min_pixels):
    ids, counts = np.unique(label, return_counts=True)
    return [int(c) for c, n in zip(ids, counts) if c not in (0, 255) and n >= min_pixels]


def qualifying_strict(label, min_pixels):
    ids, counts = np.unique(label, return_counts=True)
    return [int(c) for c, n in zip(ids, counts) if c not in (0, 255) and n > min_pixels]


def qualifying_with_background(label, min_pixels):
    ids, counts = np.unique(label, return_counts=True)
    return [int(c) for c, n in zip(ids, counts) if c != 255 and n >= min_pixels]


def qualifying_with_ignore(label, min_pixels):
    ids, counts = np.unique(label, return_counts=True)
    return [int(c) for c, n in zip(ids, counts) if c != 0 and n >= min_pixels]


def qualifying_unsorted(label, min_pixels):
    return sorted(qualifying(label, min_pixels), reverse=True)


def test_qualifying_classes_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb01.check_qualifying_classes(qualifying)
    nb01.check_qualifying_classes(qualifying_by_hand)
    assert capsys.readouterr().out.count("✓ qualifying_classes") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (qualifying_strict, "use >=, not >"),
    (qualifying_with_background, "0 is the background"),
    (qualifying_with_ignore, "255 marks ignored pixels"),
    (qualifying_unsorted, "not sorted"),
])
def test_qualifying_classes_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb01.check_qualifying_classes(answer)


# --- sample_episode -------------------------------------------------------------------------------------------------


def sample(candidates, shots, seed):
    rng = np.random.default_rng(seed)
    query = candidates[int(rng.integers(len(candidates)))]
    others = [c for c in candidates if c != query]
    return query, tuple(others[int(i)] for i in rng.choice(len(others), size=shots, replace=False))


def sample_with_random(candidates, shots, seed):
    rng = random.Random(seed)
    picks = rng.sample(list(candidates), shots + 1)
    return picks[0], tuple(picks[1:])


def sample_with_replacement(candidates, shots, seed):
    rng = np.random.default_rng(seed)
    query = candidates[int(rng.integers(len(candidates)))]
    others = [c for c in candidates if c != query]
    return query, tuple(others[int(i)] for i in rng.integers(len(others), size=shots))


def sample_query_among_supports(candidates, shots, seed):
    rng = np.random.default_rng(seed)
    query = candidates[int(rng.integers(len(candidates)))]
    return query, tuple(candidates[int(i)] for i in rng.choice(len(candidates), size=shots, replace=False))


def sample_global_state(candidates, shots, seed):
    picks = np.random.choice(len(candidates), size=shots + 1, replace=False)
    return candidates[int(picks[0])], tuple(candidates[int(i)] for i in picks[1:])


def sample_fixed_query(candidates, shots, seed):
    rng = np.random.default_rng(seed)
    others = list(candidates[1:])
    return candidates[0], tuple(others[int(i)] for i in rng.choice(len(others), size=shots, replace=False))


def test_sample_episode_passes_right_answers(capsys: pytest.CaptureFixture[str]) -> None:
    nb01.check_sample_episode(sample)
    nb01.check_sample_episode(sample_with_random)
    assert capsys.readouterr().out.count("✓ sample_episode") == 2


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (sample_with_replacement, "without replacement"),
    (sample_query_among_supports, "is also a support"),
    (sample_global_state, "the same seed must give the same episode"),
    (sample_fixed_query, "the query must be drawn"),
])
def test_sample_episode_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb01.check_sample_episode(answer)


def test_sample_episode_check_leaves_numpy_global_state_alone() -> None:
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    nb01.check_sample_episode(sample)
    assert np.random.random() == expected
