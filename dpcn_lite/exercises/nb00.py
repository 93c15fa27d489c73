"""Checks for notebook 00 (welcome): the evaluated foreground fraction, a foreground IoU, a 1-shot episode by hand.

Each check runs the learner's function on small fixed inputs, compares it with the library (``data_utils.binarize``,
:func:`dpcn_lite.metrics.episode_counts`) or with a value computed here, prints one ``✓`` line when it agrees and
raises :class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from data_utils.episodes import binarize
from data_utils.validation import IGNORE_INDEX
from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, passed, run_answer
from dpcn_lite.metrics import episode_counts

__all__ = ["check_foreground_fraction", "check_foreground_iou", "check_one_shot_episode"]


def _number(got: Any, what: str) -> float:
    expect(isinstance(got, (float, int, np.floating, np.integer)) and not isinstance(got, bool),
           f"{what}: return a Python number (float(...)), got {type(got).__name__}.")
    return float(got)


# --- foreground fraction ---------------------------------------------------------------------------------------------


def _fraction_reference(label: np.ndarray) -> float:
    evaluated = label != IGNORE_INDEX
    return float((label[evaluated] == 1).sum() / evaluated.sum())


def _fraction_cases() -> list[tuple[str, np.ndarray]]:
    tiny = np.array([[0, 1], [255, 1]], dtype=np.uint8)                  # 2 of 3 evaluated pixels
    band = np.zeros((8, 8), dtype=np.uint8)
    band[2:6, 2:6] = 255
    band[3:5, 3:5] = 1                                                     # 4 foreground, 12 ignored, 48 background
    mostly_ignored = np.full((4, 5), 255, dtype=np.uint8)
    mostly_ignored[0, :2] = 1
    mostly_ignored[1, :3] = 0                                              # 2 of 5 evaluated pixels
    return [("a 2×2 label [[0, 1], [255, 1]]", tiny), ("a square with an ignore band", band),
            ("a label that is mostly 255", mostly_ignored)]


def check_foreground_fraction(answer: Callable[[np.ndarray], float]) -> None:
    """``answer(label)``: the fraction of the non-ignored pixels of a {0, 1, 255} label that are foreground."""
    what = "foreground_fraction"
    for name, label in _fraction_cases():
        got = _number(_call(answer, label.copy(), what=what, hint="label != 255 selects the evaluated pixels."), what)
        expected = _fraction_reference(label)
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        evaluated, foreground = int((label != IGNORE_INDEX).sum()), int((label == 1).sum())
        if math.isclose(got, foreground / label.size, abs_tol=1e-9):
            hint = "you divided by every pixel; divide by the evaluated ones only (label != 255)."
        elif math.isclose(got, foreground, abs_tol=1e-9):
            hint = "you returned the count of foreground pixels; divide it by the number of evaluated pixels."
        elif math.isclose(got, int((label > 0).sum()) / evaluated, abs_tol=1e-9) or got > 1:
            hint = "you counted the 255 pixels as foreground (label > 0?); foreground is label == 1."
        else:
            hint = "count the pixels labelled 1, divide by the number of pixels not labelled 255."
        raise ExerciseError(f"{what}: on {name} you returned {got:.4f}, expected {expected:.4f}. Hint: {hint}")
    passed(f"{what}: right on {len(_fraction_cases())} labels (255 pixels left out of the count)")


# --- foreground IoU --------------------------------------------------------------------------------------------------


def _iou_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    label = np.zeros((6, 6), dtype=np.uint8)
    label[1:5, 1:5] = 255
    label[2:4, 2:4] = 1                                                    # 4 foreground pixels inside a 255 band
    shifted = np.zeros((6, 6), dtype=np.uint8)
    shifted[2:4, 3:5] = 1                                                  # 2 of them hit, 2 land in the band
    wide = np.zeros((6, 6), dtype=np.uint8)
    wide[1:5, 1:5] = 1                                                     # covers the band: it must not count
    plain = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.uint8)
    guess = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)   # I = 2, U = 5
    empty = np.zeros((3, 3), dtype=np.uint8)
    return [("a plain 3×3 pair", guess, plain), ("a prediction shifted into the 255 band", shifted, label),
            ("a prediction that covers the 255 band", wide, label),
            ("a prediction of the whole image", np.ones((3, 3), dtype=np.uint8), plain),
            ("an empty prediction and an empty label", empty, empty)]


def check_foreground_iou(answer: Callable[[np.ndarray, np.ndarray], float]) -> None:
    """``answer(prediction, label)``: foreground IoU of a 0/1 prediction against a {0, 1, 255} label, pixels where
    the label is 255 left out, NaN when the union is empty (as :func:`dpcn_lite.metrics.episode_counts`)."""
    what = "foreground_iou"
    for name, prediction, label in _iou_cases():
        got = _number(_call(answer, prediction.copy(), label.copy(), what=what,
                            hint="for an empty union, return float('nan') instead of dividing by zero."), what)
        expected = episode_counts(prediction, label).fg_iou
        if math.isnan(expected):
            expect(math.isnan(got), f"{what}: on {name} you returned {got}, expected nan: nothing is predicted and "
                                    "nothing is there, so there is no union to divide by. Return float('nan').")
            continue
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        pred, true = prediction == 1, label == 1
        if math.isclose(got, (pred & true).sum() / (pred | true).sum(), abs_tol=1e-9):
            hint = "you counted predicted pixels where the label is 255; leave those pixels out (label != 255)."
        elif math.isclose(got, (pred & true).sum() / max(pred.sum(), 1), abs_tol=1e-9):
            hint = "you divided by the predicted area (that is precision); IoU divides by the union."
        elif math.isclose(got, (pred == true).mean(), abs_tol=1e-9):
            hint = "that is pixel accuracy; IoU = |prediction AND label| / |prediction OR label| over foreground."
        else:
            hint = "intersection = predicted 1 and label 1; union = predicted 1 or label 1; both where label != 255."
        raise ExerciseError(f"{what}: on {name} you returned {got:.4f}, expected {expected:.4f}. Hint: {hint}")
    passed(f"{what}: agrees with dpcn_lite.metrics on {len(_iou_cases())} pairs (255 left out, NaN for nothing)")


# --- a 1-shot episode by hand ----------------------------------------------------------------------------------------

EPISODE_KEYS = ("support_image", "support_mask", "query_image", "query_mask")


def _episode_inputs() -> tuple[Any, int, str, str]:
    """A small synthetic source and two test images whose primary class is 'ring' (image j's is j % 20 + 1)."""
    from data_utils.synthetic import SyntheticSource

    return SyntheticSource(image_size=64, seed=0, images_per_class=2), 6, "test-00025", "test-00005"


def check_one_shot_episode(answer: Callable[..., dict[str, np.ndarray]]) -> None:
    """``answer(source, class_id, query_id, support_id)``: a dict with the support's and the query's image and mask,
    masks binarised for ``class_id`` (1 class, 0 rest, 255 kept); it must refuse a support that is the query."""
    what = "one_shot_episode"
    source, class_id, query_id, support_id = _episode_inputs()
    hint = "load both images with source.load(image_id) and binarise each label for class_id."
    episode = _call(answer, source, class_id, query_id, support_id, what=what, hint=hint)
    expect(isinstance(episode, dict), f"{what}: return a dict with the keys {EPISODE_KEYS}.")
    missing = [key for key in EPISODE_KEYS if key not in episode]
    expect(not missing, f"{what}: the dict lacks {missing}; it needs {EPISODE_KEYS}.")
    for role, image_id in (("support", support_id), ("query", query_id)):
        image, label = source.load(image_id)
        got_image = np.asarray(episode[f"{role}_image"])
        got_mask = np.asarray(episode[f"{role}_mask"])
        if not (got_image.shape == image.shape and np.array_equal(got_image, image)):
            other_id = query_id if role == "support" else support_id
            swapped = got_image.shape == image.shape and np.array_equal(got_image, source.load(other_id)[0])
            raise ExerciseError(f"{what}: {role}_image is not the image {image_id}"
                                + ("; it is the other one: support and query swapped?" if swapped
                                   else "; use source.load(image_id), which returns (image, label)."))
        expect(got_mask.shape == label.shape,
               f"{what}: {role}_mask has shape {got_mask.shape}, expected {label.shape}.")
        expected = binarize(label, class_id)
        if np.array_equal(got_mask, expected):
            continue
        values = sorted(int(v) for v in np.unique(got_mask))
        if not set(values) <= {0, 1, IGNORE_INDEX}:
            reason = f"it holds the values {values}: that is the raw label; keep 1 for class_id, 0 for the rest."
        elif IGNORE_INDEX in values and not np.array_equal(got_mask == 1, expected == 1):
            reason = "its foreground differs: only pixels labelled class_id become 1 (other classes become 0)."
        elif IGNORE_INDEX not in values and (label == IGNORE_INDEX).any():
            reason = "the 255 (ignore) pixels are gone; they must stay 255 so the loss and the metrics skip them."
        else:
            reason = "1 where label == class_id, 255 where label == 255, 0 everywhere else."
        raise ExerciseError(f"{what}: {role}_mask of {image_id} is not binarised right: {reason}")
    try:
        run_answer(answer, source, class_id, query_id, query_id, what=what)
    except ValueError:
        pass
    except ExerciseError:
        raise
    else:
        raise ExerciseError(f"{what}: with support_id == query_id you returned an episode; raise ValueError instead "
                            "(a support that is the query lets a model copy the answer).")
    passed(f"{what}: both masks binarised for class {class_id} with 255 kept; a support equal to the query is refused")
