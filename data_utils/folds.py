"""Class lists and the fold splits of every dataset (PASCAL-5i, COCO-20i, the synthetic benchmark).

Class indices are 1-based everywhere (0 is background, 255 is ignore), so ``PASCAL_CLASSES[c - 1]`` names class ``c``.
"""

from __future__ import annotations

import operator
from typing import Literal

NUM_FOLDS = 4

# PASCAL VOC 2012, standard order (index 1..20).
PASCAL_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# COCO 2014, the 80 categories in the standard category order (sorted category id), contiguous index 1..80.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# The embedded synthetic benchmark: 20 shape classes, fold i = classes 5i+1..5i+5 (like PASCAL).
# Near-twins (solid vs holed vs slotted) are spread over different folds on purpose: a novel class then always has a
# look-alike among the training classes that differs only in local structure.
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "disk", "square frame", "cross with hole", "E shape", "two bars",          # fold 0
    "ring", "solid square", "T shape", "comb", "triangle with hole",           # fold 1
    "ring with slot", "frame with gap", "cross", "U shape", "grid",            # fold 2
    "C shape", "L shape", "H shape", "triangle", "wheel",                      # fold 3
)

CLASS_LISTS: dict[str, tuple[str, ...]] = {
    "pascal": PASCAL_CLASSES,
    "coco": COCO_CLASSES,
    "synthetic": SYNTHETIC_CLASSES,
}

CocoSplit = Literal["interleaved", "consecutive"]


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of ``dataset`` ("pascal", "coco" or "synthetic"); name of class c is ``names[c - 1]``."""
    try:
        return CLASS_LISTS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(CLASS_LISTS)}") from None


def fold_classes(
    dataset: str,
    fold: int,
    split: Literal["test", "train"] = "test",
    coco_split: CocoSplit = "interleaved",
) -> list[int]:
    """The sorted 1-based class ids that fold ``fold`` tests on (``split="test"``) or trains on (``split="train"``).

    PASCAL and synthetic: fold i tests classes 5i+1..5i+5. COCO: interleaved (FWB, the PFENet/HSNet/BAM default)
    tests {4k+i+1}; consecutive (PANet) tests 20i+1..20i+20. Training classes are all the others.
    """
    num_classes = len(class_names(dataset))
    try:
        fold_number = operator.index(fold)  # ints and NumPy integers; floats and strings fail here
    except TypeError:
        fold_number = -1
    if isinstance(fold, bool) or not 0 <= fold_number < NUM_FOLDS:
        raise ValueError(f"unknown fold {fold!r} for {dataset}: folds are 0..{NUM_FOLDS - 1}")
    fold = fold_number
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    per_fold = num_classes // NUM_FOLDS
    if dataset == "coco":
        if coco_split == "interleaved":
            test = [NUM_FOLDS * k + fold + 1 for k in range(per_fold)]
        elif coco_split == "consecutive":
            test = list(range(per_fold * fold + 1, per_fold * fold + per_fold + 1))
        else:
            raise ValueError(f"coco_split must be 'interleaved' or 'consecutive', got {coco_split!r}")
    else:
        test = list(range(per_fold * fold + 1, per_fold * fold + per_fold + 1))
    if split == "test":
        return test
    held_out = set(test)
    return [c for c in range(1, num_classes + 1) if c not in held_out]
