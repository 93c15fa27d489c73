"""Fold splits: disjoint, covering, and matching the published class lists."""

from __future__ import annotations

import pytest

from data_utils.folds import COCO_CLASSES, PASCAL_CLASSES, SYNTHETIC_CLASSES, fold_classes

# Written out from the protocol notes (FWB interleaved split), not derived from the code under test.
COCO_INTERLEAVED_FOLD_NAMES = {
    0: ["person", "airplane", "boat", "parking meter", "dog", "elephant", "backpack", "suitcase", "sports ball",
        "skateboard", "wine glass", "spoon", "sandwich", "hot dog", "chair", "dining table", "mouse", "microwave",
        "refrigerator", "scissors"],
    1: ["bicycle", "bus", "traffic light", "bench", "horse", "bear", "umbrella", "frisbee", "kite", "surfboard", "cup",
        "bowl", "orange", "pizza", "couch", "toilet", "remote", "oven", "book", "teddy bear"],
    2: ["car", "train", "fire hydrant", "bird", "sheep", "zebra", "handbag", "skis", "baseball bat", "tennis racket",
        "fork", "banana", "broccoli", "donut", "potted plant", "tv", "keyboard", "toaster", "clock", "hair drier"],
    3: ["motorcycle", "truck", "stop sign", "cat", "cow", "giraffe", "tie", "snowboard", "baseball glove", "bottle",
        "knife", "apple", "carrot", "cake", "bed", "laptop", "cell phone", "sink", "vase", "toothbrush"],
}
PASCAL_FOLD_NAMES = {
    0: ["aeroplane", "bicycle", "bird", "boat", "bottle"],
    1: ["bus", "car", "cat", "chair", "cow"],
    2: ["diningtable", "dog", "horse", "motorbike", "person"],
    3: ["pottedplant", "sheep", "sofa", "train", "tvmonitor"],
}


@pytest.mark.parametrize(
    "dataset, coco_split, n_classes, per_fold",
    [("pascal", "interleaved", 20, 5), ("synthetic", "interleaved", 20, 5),
     ("coco", "interleaved", 80, 20), ("coco", "consecutive", 80, 20)],
)
def test_folds_are_disjoint_cover_all_classes_and_train_is_the_complement(dataset, coco_split, n_classes, per_fold):
    tests = [fold_classes(dataset, f, "test", coco_split) for f in range(4)]
    assert all(len(t) == per_fold for t in tests)
    union = set().union(*map(set, tests))
    assert union == set(range(1, n_classes + 1))
    assert sum(len(t) for t in tests) == n_classes  # disjoint
    for f in range(4):
        train = fold_classes(dataset, f, "train", coco_split)
        assert set(train).isdisjoint(tests[f])
        assert set(train) | set(tests[f]) == set(range(1, n_classes + 1))


def test_pascal_folds_match_the_protocol_lists():
    for f, names in PASCAL_FOLD_NAMES.items():
        assert [PASCAL_CLASSES[c - 1] for c in fold_classes("pascal", f)] == names


def test_coco_interleaved_folds_match_the_fwb_lists():
    for f, names in COCO_INTERLEAVED_FOLD_NAMES.items():
        assert [COCO_CLASSES[c - 1] for c in fold_classes("coco", f)] == names


def test_coco_consecutive_folds_start_and_end_where_panet_does():
    ends = {0: ("person", "cow"), 1: ("elephant", "bottle"), 2: ("wine glass", "bed"),
            3: ("dining table", "toothbrush")}
    for f, (first, last) in ends.items():
        ids = fold_classes("coco", f, "test", "consecutive")
        assert (COCO_CLASSES[ids[0] - 1], COCO_CLASSES[ids[-1] - 1]) == (first, last)


def test_class_lists_have_unique_names_of_the_right_length():
    assert len(set(PASCAL_CLASSES)) == 20 and len(set(COCO_CLASSES)) == 80 and len(set(SYNTHETIC_CLASSES)) == 20


@pytest.mark.parametrize("bad", [-1, 4, 1.0, "0", True])
def test_unknown_fold_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="fold"):
        fold_classes("pascal", bad)


def test_numpy_integer_folds_are_accepted():
    import numpy as np

    assert fold_classes("pascal", np.int64(2)) == fold_classes("pascal", 2)


def test_unknown_dataset_and_split_are_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        fold_classes("imagenet", 0)
    with pytest.raises(ValueError, match="split"):
        fold_classes("pascal", 0, "val")
    with pytest.raises(ValueError, match="coco_split"):
        fold_classes("coco", 0, "test", "random")
