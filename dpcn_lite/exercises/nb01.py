"""Checks for notebook 01 (data and episodes): the class -> fold rule, binarisation, the minimum-pixels rule and a
seeded episode sampler.

Each check runs the learner's function on small fixed inputs, compares it with the data layer (``data_utils``) or
with properties every right answer has, prints one ``✓`` line when it agrees and raises
:class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from data_utils.episodes import binarize
from data_utils.folds import NUM_FOLDS, class_names, fold_classes
from data_utils.sources import qualifying_classes
from data_utils.validation import IGNORE_INDEX
from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, passed

__all__ = ["check_binarize", "check_fold_of_class", "check_qualifying_classes", "check_sample_episode"]


# --- class -> fold ---------------------------------------------------------------------------------------------------


def check_fold_of_class(answer: Callable[[str, int], int]) -> None:
    """``answer(dataset, class_id)``: the fold that tests the 1-based ``class_id`` of "pascal", "synthetic" or "coco"
    (COCO's interleaved split); every fold's base/novel split built from it must equal ``fold_classes``."""
    what = "fold_of_class"
    for dataset in ("pascal", "synthetic", "coco"):
        per_fold = len(class_names(dataset)) // NUM_FOLDS
        truth = {c: fold for fold in range(NUM_FOLDS) for c in fold_classes(dataset, fold, "test")}
        for class_id, fold in truth.items():
            got = _call(answer, dataset, class_id, what=what, hint="class ids start at 1, folds at 0.")
            expect(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
                   f"{what}: return an int fold number, got {type(got).__name__}.")
            if int(got) == fold:
                continue
            name = class_names(dataset)[class_id - 1]
            if dataset == "coco" and int(got) == (class_id - 1) // per_fold:
                hint = ("that is the consecutive rule; the default COCO-20i split is interleaved: fold i tests "
                        "classes 4k + i + 1, so the fold is the remainder of (class_id - 1) by 4.")
            elif int(got) == class_id // per_fold or int(got) == (class_id + 1) // per_fold:
                hint = (f"an off-by-one: class ids are 1-based, so class {per_fold} is still in fold 0; "
                        "subtract 1 before dividing.")
            elif dataset == "coco":
                hint = "COCO's interleaved split: fold i tests classes 4k + i + 1 (k = 0..19)."
            else:
                hint = f"fold i tests classes {per_fold}i + 1 ... {per_fold}i + {per_fold}."
            raise ExerciseError(f"{what}: {dataset} class {class_id} ('{name}') is tested in fold {fold}, you "
                                f"returned {got}. Hint: {hint}")
    passed(f"{what}: right for the {20 + 20 + 80} classes of PASCAL-5i, the synthetic benchmark and COCO-20i")


# --- binarise ---------------------------------------------------------------------------------------------------------


def _binarize_cases() -> list[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(1)
    label = rng.choice(np.array([0, 3, 6, 7, 21, 255], dtype=np.uint8), size=(9, 11))
    label[0, :3] = (6, 255, 7)                                          # every kind is present
    corner = np.zeros((4, 4), dtype=np.uint8)
    corner[1:3, 1:3] = 255
    return [("a label with classes 3, 6, 7, 21, background and 255, target 6", label, 6),
            ("the same label, target 21 (a generated class)", label, 21),
            ("a label without the target (only 0 and 255), target 2", corner, 2)]


def check_binarize(answer: Callable[[np.ndarray, int], np.ndarray]) -> None:
    """``answer(label, class_id)``: 1 where the label is ``class_id``, 255 where it is 255, 0 elsewhere, as a new
    ``uint8`` array of the label's shape, the label itself untouched (``data_utils.binarize``)."""
    what = "binarize"
    for name, label, class_id in _binarize_cases():
        given = label.copy()
        got = _call(answer, given, class_id, what=what, hint="(label == class_id).astype(np.uint8) is a start.")
        expect(np.array_equal(given, label),
               f"{what}: your function changed the label it was given; build a new array (the label may be used "
               "again for another class).")
        expect(isinstance(got, np.ndarray), f"{what}: return a NumPy array, got {type(got).__name__}.")
        expect(got.shape == label.shape, f"{what}: shape {got.shape}, expected {label.shape}.")
        expected = binarize(label, class_id)
        if np.array_equal(got, expected):
            expect(got.dtype == np.uint8, f"{what}: the values are right but the dtype is {got.dtype}; return uint8 "
                                          "like the labels (.astype(np.uint8)).")
            continue
        if np.array_equal(got == 1, label == class_id) and not (got == IGNORE_INDEX).any() \
                and (label == IGNORE_INDEX).any():
            hint = "the 255 pixels became 0; they must stay 255 (ignore), so the loss and the metrics skip them."
        elif np.array_equal(got == 1, (label != 0) & (label != IGNORE_INDEX)) or \
                np.array_equal(got == 1, label != 0):
            hint = "every class became 1; only class_id is the target, other classes are background (0)."
        elif (got == class_id).any() and class_id != 1:
            hint = "the target's pixels hold class_id; they must hold 1."
        else:
            hint = "1 where label == class_id, 255 where label == 255, 0 everywhere else."
        where = tuple(int(i) for i in np.argwhere(got != expected)[0])
        raise ExerciseError(f"{what}: on {name}, pixel {where} (label {int(label[where])}) is {int(got[where])}, "
                            f"expected {int(expected[where])}. Hint: {hint}")
    passed(f"{what}: matches data_utils.binarize on {len(_binarize_cases())} labels (255 kept, other classes -> 0)")


# --- the minimum-pixels rule -----------------------------------------------------------------------------------------


def _pixel_cases() -> list[tuple[str, np.ndarray, int]]:
    label = np.zeros((20, 20), dtype=np.uint8)                           # 400 pixels
    label[0, :10] = 3                                                    # exactly 10 pixels: qualifies at 10
    label[1, :9] = 5                                                     # 9 pixels: does not
    label[2:4, :] = 255                                                  # 40 ignore pixels: never a class
    label[10:, :] = 17                                                   # 200 pixels
    label[5, :12] = 220                                                  # a generated class id
    shuffled = np.ascontiguousarray(label[::-1, ::-1])
    only_ignore = np.full((6, 6), 255, dtype=np.uint8)
    only_ignore[0, 0] = 0
    return [("a label with classes of 200, 12, 10 and 9 pixels, min_pixels 10", label, 10),
            ("the same label, min_pixels 11", shuffled, 11),
            ("a label of background and 255 only, min_pixels 1", only_ignore, 1)]


def check_qualifying_classes(answer: Callable[[np.ndarray, int], Sequence[int]]) -> None:
    """``answer(label, min_pixels)``: the sorted class ids (1..254; not background 0, not ignore 255) that cover at
    least ``min_pixels`` pixels of ``label`` (``data_utils.sources.qualifying_classes``)."""
    what = "qualifying_classes"
    for name, label, min_pixels in _pixel_cases():
        got = _call(answer, label.copy(), min_pixels, what=what, hint="np.bincount(label.ravel()) counts every id.")
        try:
            got_list = [int(c) for c in got]
        except TypeError:
            raise ExerciseError(f"{what}: return a list of class ids, got {type(got).__name__}.") from None
        expected = qualifying_classes(label, IGNORE_INDEX - 1, min_pixels)
        if got_list == expected:
            continue
        counts = {int(c): int((label == c).sum()) for c in np.unique(label)}
        if 0 in got_list:
            hint = "0 is the background, not a class; leave it out."
        elif IGNORE_INDEX in got_list:
            hint = "255 marks ignored pixels, not a class; leave it out."
        elif sorted(got_list) == expected:
            hint = "the ids are right but not sorted; return them in increasing order."
        elif set(expected) - set(got_list) and all(counts[c] == min_pixels for c in set(expected) - set(got_list)):
            hint = "a class with exactly min_pixels pixels qualifies: use >=, not >."
        else:
            hint = "count each id's pixels; keep the ids 1..254 whose count is >= min_pixels."
        raise ExerciseError(f"{what}: on {name} you returned {got_list}, expected {expected} (pixel counts by id: "
                            f"{counts}). Hint: {hint}")
    passed(f"{what}: matches data_utils on {len(_pixel_cases())} labels (>= min_pixels; 0 and 255 never qualify)")


# --- a seeded episode sampler ----------------------------------------------------------------------------------------


def _episode(got: Any, what: str, shots: int) -> tuple[str, tuple[str, ...]]:
    expect(isinstance(got, tuple | list) and len(got) == 2,
           f"{what}: return a pair (query_id, support_ids), got {type(got).__name__}.")
    query, supports = got
    expect(isinstance(query, str), f"{what}: the query must be one image id (a str), got {type(query).__name__}.")
    expect(isinstance(supports, tuple | list), f"{what}: the supports must be a tuple of image ids.")
    expect(len(supports) == shots, f"{what}: {len(supports)} supports for shots={shots}.")
    return query, tuple(str(s) for s in supports)


def check_sample_episode(answer: Callable[[Sequence[str], int, int], tuple[str, tuple[str, ...]]]) -> None:
    """``answer(candidates, shots, seed)``: a query and ``shots`` distinct supports drawn from ``candidates`` (the
    images where the class qualifies), none of them the query, the same for the same seed whatever else ran."""
    what = "sample_episode"
    hint = "rng = np.random.default_rng(seed); rng.choice(..., replace=False) draws distinct items."
    candidates = [f"img-{n:02d}" for n in range(8)]
    for shots in (1, 3, len(candidates) - 1):
        for seed in range(12):
            query, supports = _episode(_call(answer, list(candidates), shots, seed, what=what, hint=hint), what, shots)
            expect(query in candidates and set(supports) <= set(candidates),
                   f"{what}: every image must come from candidates; got query {query!r}, supports {supports}.")
            expect(query not in supports,
                   f"{what}: seed {seed}, shots {shots}: the query {query!r} is also a support; draw the supports "
                   "from the other candidates (a support equal to the query lets a model copy the answer).")
            expect(len(set(supports)) == shots,
                   f"{what}: seed {seed}, shots {shots}: a support repeats in {supports}; draw without replacement.")
    first = _episode(_call(answer, list(candidates), 3, 7, what=what, hint=hint), what, 3)
    saved = np.random.get_state()  # the check moves NumPy's global generator; the notebook's is put back after
    try:
        np.random.seed(123)
        again = _episode(_call(answer, list(candidates), 3, 7, what=what, hint=hint), what, 3)
        np.random.seed(456)
        other_state = _episode(_call(answer, list(candidates), 3, 7, what=what, hint=hint), what, 3)
    finally:
        np.random.set_state(saved)
    expect(first == again == other_state,
           f"{what}: seed 7 gave {first}, then {again}, then {other_state}; the same seed must give the same episode "
           "whatever ran before. Draw from np.random.default_rng(seed), not from np.random's global state or "
           "random.")
    queries = {_episode(_call(answer, list(candidates), 1, seed, what=what, hint=hint), what, 1)[0]
               for seed in range(20)}
    expect(len(queries) >= 4, f"{what}: 20 seeds gave only the queries {sorted(queries)}; the query must be drawn "
                              "at random from the candidates too.")
    support_sets = {_episode(_call(answer, list(candidates), 1, seed, what=what, hint=hint), what, 1)[1]
                    for seed in range(20)}
    expect(len(support_sets) >= 4, f"{what}: 20 seeds gave only the supports {sorted(support_sets)}; draw them at "
                                   "random among the other candidates.")
    passed(f"{what}: distinct supports, never the query, reproducible from the seed, varied across seeds")
