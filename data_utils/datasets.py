"""Every dataset by name: its source (:func:`get_source`) and its episodes in one call (:func:`episodes_for_dataset`).

This module sits above the dataset modules (``synthetic``, ``pascal``, ``coco``) and ``episodes``, so none of them
needs to import it: the base class in ``sources`` knows no dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .coco import CocoSource
from .episodes import DEFAULT_TEST_EPISODES, EpisodeDataset
from .pascal import PascalSource
from .sources import SegmentationSource, Split
from .synthetic import SyntheticSource
from .transforms import IMAGENET_NORMALIZATION, Normalization, test_transform, train_transform

DATASETS: tuple[str, ...] = ("synthetic", "pascal", "coco")
"""Dataset names, in the order the command line lists them."""


def get_source(name: str, root: str | Path | None = None, **options: Any) -> SegmentationSource:
    """Build a source by name: "synthetic" (no files needed), "pascal" or "coco" (from ``root`` or ``$DPCN_DATA``)."""
    if name == "synthetic":
        return SyntheticSource(**options)
    if name == "pascal":
        return PascalSource(root=root, **options)
    if name == "coco":
        return CocoSource(root=root, **options)
    raise ValueError(f"unknown dataset {name!r}; expected 'synthetic', 'pascal' or 'coco'")


def episodes_for_dataset(
    dataset: str = "synthetic",
    fold: int = 0,
    split: Split = "train",
    shots: int = 1,
    image_size: int = 160,
    episodes: int = DEFAULT_TEST_EPISODES,
    seed: int = 0,
    root: str | None = None,
    normalization: Normalization = IMAGENET_NORMALIZATION,
    augment: bool | None = None,
    source: SegmentationSource | None = None,
    classes: Sequence[int] | None = None,
    **source_options: Any,
) -> EpisodeDataset:
    """Episodes of a dataset given by name, with the train or test transform at ``image_size``.

    ``augment`` defaults to True for ``split="train"``; with False the test transform (resize + pad) is used.
    For the synthetic source ``image_size`` is also the rendering size unless ``source_options`` say otherwise.
    ``classes`` restricts episodes to some of the fold's classes (see ``EpisodeDataset``). The run wing's
    counterpart, built from a training config, is ``dpcn_lite.experiment.episodes_for_config``.
    """
    if source is None:
        if dataset == "synthetic":
            source_options.setdefault("image_size", image_size)
        source = get_source(dataset, root=root, **source_options)
    if augment is None:
        augment = split == "train"
    transform = (train_transform if augment else test_transform)(image_size, normalization)
    return EpisodeDataset(source, fold, split, shots, episodes=episodes, seed=seed, transform=transform,
                          classes=classes)


__all__ = ["DATASETS", "episodes_for_dataset", "get_source"]
