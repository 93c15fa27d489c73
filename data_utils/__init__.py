"""Few-shot segmentation data: the embedded synthetic benchmark, PASCAL-5i, COCO-20i, episodes and transforms."""

from .datasets import DATASETS, episodes_for_dataset, get_source
from .episodes import EpisodeDataset, EpisodeSpec, binarize, collate_episodes, move_batch
from .folds import COCO_CLASSES, NUM_FOLDS, PASCAL_CLASSES, SYNTHETIC_CLASSES, class_names, fold_classes
from .coco import CocoSource
from .pascal import PascalSource
from .sources import SegmentationSource, default_data_root
from .synthetic import SyntheticSource
from .transforms import (
    EFFICIENTNET_LITE_NORMALIZATION,
    IMAGENET_NORMALIZATION,
    EpisodeTransform,
    Normalization,
    plain_transform,
    test_transform,
    train_transform,
)
from .validation import IGNORE_INDEX, DataError, DatasetNotFoundError

__all__ = [
    "COCO_CLASSES",
    "DATASETS",
    "EFFICIENTNET_LITE_NORMALIZATION",
    "IGNORE_INDEX",
    "IMAGENET_NORMALIZATION",
    "NUM_FOLDS",
    "PASCAL_CLASSES",
    "SYNTHETIC_CLASSES",
    "CocoSource",
    "DataError",
    "DatasetNotFoundError",
    "EpisodeDataset",
    "EpisodeSpec",
    "EpisodeTransform",
    "Normalization",
    "PascalSource",
    "SegmentationSource",
    "SyntheticSource",
    "binarize",
    "class_names",
    "collate_episodes",
    "default_data_root",
    "episodes_for_dataset",
    "fold_classes",
    "get_source",
    "move_batch",
    "plain_transform",
    "test_transform",
    "train_transform",
]
