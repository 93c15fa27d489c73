"""One interface for every dataset: the synthetic benchmark, PASCAL-5i and COCO-20i all look the same to episodes.

A *source* knows its class names, the image ids of its two splits ("train" and "test"), how to load one image with
its class-index label, and which images count for which class (the 2,048-pixel rule of the PFENet protocol).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
from tqdm.auto import tqdm

from .folds import fold_classes as _fold_classes
from .validation import IGNORE_INDEX

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")
DATA_ENV = "DPCN_DATA"
# PFENet's minimum object size: a class counts in an image only if it covers >= 2 * 32 * 32 pixels.
MIN_CLASS_PIXELS = 2 * 32 * 32


def default_data_root() -> Path:
    """The data folder: ``$DPCN_DATA`` when set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV, "data")).expanduser()


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} ('test' is VOC/COCO val)")
    return split


def class_pixel_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class id 0..num_classes of a uint8 label (255 and background excluded by the caller)."""
    counts = np.bincount(label.ravel(), minlength=256)
    return counts[: num_classes + 1]


def qualifying_classes(label: np.ndarray, num_classes: int, min_pixels: int) -> list[int]:
    """Class ids (>= 1) that cover at least ``min_pixels`` pixels of ``label``."""
    counts = class_pixel_counts(label, num_classes)
    return [int(c) for c in np.nonzero(counts >= min_pixels)[0] if c != 0]


def build_class_index(
    image_ids: Iterable[str],
    read_label,
    num_classes: int,
    min_pixels: int,
    desc: str = "indexing",
    progress: bool | None = None,
) -> dict[int, list[str]]:
    """Map each class id 1..N to the (sorted) image ids in which it covers >= ``min_pixels`` pixels.

    ``progress``: a bar (default: only for more than 2,000 images, i.e. files to read)."""
    index: dict[int, list[str]] = {c: [] for c in range(1, num_classes + 1)}
    ids = list(image_ids)
    show = len(ids) >= 2000 if progress is None else progress
    for image_id in tqdm(ids, desc=desc, leave=False, disable=not show):
        for c in qualifying_classes(read_label(image_id), num_classes, min_pixels):
            index[c].append(image_id)
    return {c: sorted(v) for c, v in index.items()}


class SegmentationSource(ABC):
    """Base class of all datasets. Subclasses set ``name``, ``classes`` and ``min_pixels``."""

    name: str = ""
    classes: tuple[str, ...] = ()
    min_pixels: int = MIN_CLASS_PIXELS
    index_progress: bool | None = None
    """Progress bar while indexing (None: for large image lists)."""

    def __init__(self) -> None:
        self._class_index_cache: dict[str, dict[int, list[str]]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_name(self, class_id: int) -> str:
        """The name of 1-based ``class_id``."""
        if not 1 <= int(class_id) <= self.num_classes:
            raise ValueError(f"unknown class {class_id!r} for {self.name}: ids are 1..{self.num_classes}")
        return self.classes[int(class_id) - 1]

    def fold_classes(self, fold: int, split: Split = "test") -> list[int]:
        """Classes fold ``fold`` tests on (``split="test"``) or trains on; see ``data_utils.folds.fold_classes``."""
        return _fold_classes(self.name, fold, split)

    @abstractmethod
    def image_ids(self, split: Split) -> list[str]:
        """All image ids of ``split`` ("train" or "test"), sorted."""

    @abstractmethod
    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 HxWx3 RGB, label uint8 HxW)`` with 0 background, 1..N classes, 255 ignore."""

    def load_label(self, image_id: str) -> np.ndarray:
        """The label alone (subclasses override when it is cheaper than loading the image too)."""
        return self.load(image_id)[1]

    def class_index(self, split: Split) -> dict[int, list[str]]:
        """``{class_id: sorted image ids where the class covers >= min_pixels pixels}`` for every class 1..N."""
        check_split(split)
        if split not in self._class_index_cache:
            self._class_index_cache[split] = self._compute_class_index(split)
        return self._class_index_cache[split]

    def _compute_class_index(self, split: Split) -> dict[int, list[str]]:
        return build_class_index(
            self.image_ids(split), self.load_label, self.num_classes, self.min_pixels, desc=f"{self.name} {split}",
            progress=self.index_progress,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classes={self.num_classes})"


__all__ = [
    "IGNORE_INDEX",
    "MIN_CLASS_PIXELS",
    "SPLITS",
    "SegmentationSource",
    "build_class_index",
    "default_data_root",
    "qualifying_classes",
]
