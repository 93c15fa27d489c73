"""PASCAL-5i from the real on-disk layout: VOC 2012 images + the SBD-augmented masks (``SegmentationClassAug``).

Layout under the data root (``$DPCN_DATA``, default ``./data``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png      class indices 0..20 and 255 (palette or grey PNG)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    benchmark_RELEASE/dataset/train_noval.txt            SBD's training ids without VOC 2012 val (downloaded alone)
    lists/pascal/{train,test}.txt, {train,test}.count    derived by ``python -m data_utils.prepare pascal``
    lists/pascal/class_index_{train,test}.json           the 2,048-pixel rule, rebuilt when a mask or list changes

PFENet protocol: train = (VOC train ∪ SBD train_noval) minus VOC val, deduplicated and sorted; test = VOC val. With
the published files that is 1,464 ∪ 5,623 -> 5,953 training and 1,449 test images (PFENet's
``voc_sbd_merge_noduplicate.txt`` and ``val.txt``). SBD's ``train.txt`` must not be used instead: it holds VOC val
images and many more training images than PFENet trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import remove_orphan_temp_files
from .folds import PASCAL_CLASSES
from .lists import FileSource, write_id_list
from .sources import MIN_CLASS_PIXELS
from .validation import DataError, check_pair, prepare_command, read_label, read_rgb_image, require_path

VOC_DIR = Path("VOCdevkit") / "VOC2012"
SBD_TRAIN_LIST = Path("benchmark_RELEASE") / "dataset" / "train_noval.txt"
LIST_DIR = Path("lists") / "pascal"


def _read_id_list(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def pfenet_pascal_lists(voc_train: list[str], voc_val: list[str], sbd_train_noval: list[str]) -> dict[str, list[str]]:
    """PFENet's rule on the three published lists: train = (VOC train ∪ SBD train_noval) − VOC val, test = VOC val.

    VOC val is removed again although train_noval should hold none of it, so a stray id can never leak into training.
    Both lists are deduplicated and sorted (the order episodes rely on)."""
    val = set(voc_val)
    return {"train": sorted((set(voc_train) | set(sbd_train_noval)) - val), "test": sorted(val)}


def derive_pascal_lists(root: str | Path) -> dict[str, list[str]]:
    """Derive and write the PFENet lists from VOC's and SBD's own list files; returns ``{"train": ids, "test": ids}``.

    Every listed id must have its JPEG and its SegmentationClassAug mask; missing files are an error (not skipped).
    """
    root = Path(root)
    seg_lists = root / VOC_DIR / "ImageSets" / "Segmentation"
    voc_train = _read_id_list(require_path(seg_lists / "train.txt", "pascal", "VOC 2012 train list", root))
    voc_val = _read_id_list(require_path(seg_lists / "val.txt", "pascal", "VOC 2012 val list", root))
    sbd_train = _read_id_list(require_path(root / SBD_TRAIN_LIST, "pascal", "SBD train_noval list", root))
    lists = pfenet_pascal_lists(voc_train, voc_val, sbd_train)
    images = require_path(root / VOC_DIR / "JPEGImages", "pascal", "VOC JPEGImages folder", root)
    masks = require_path(root / VOC_DIR / "SegmentationClassAug", "pascal", "SegmentationClassAug folder", root)
    for split, ids in lists.items():
        missing = [i for i in ids if not (images / f"{i}.jpg").is_file() or not (masks / f"{i}.png").is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} PASCAL {split} images lack a JPEG or a SegmentationClassAug mask "
                f"(first: {missing[:3]}); re-extract the archives with: {prepare_command('pascal')} --root {root}"
            )
    remove_orphan_temp_files(root / LIST_DIR)
    for split, ids in lists.items():
        write_id_list(root / LIST_DIR / f"{split}.txt", ids)
    return lists


class PascalSource(FileSource):
    """PASCAL VOC 2012 + SBD masks; ids are VOC ids such as ``2007_000032``."""

    name = "pascal"
    classes = PASCAL_CLASSES
    list_dir = LIST_DIR
    describe = "PASCAL-5i"

    def __init__(self, root: str | Path | None = None, min_pixels: int = MIN_CLASS_PIXELS) -> None:
        super().__init__(root, min_pixels)
        self.require(self.root / VOC_DIR / "JPEGImages", "PASCAL VOC 2012 (JPEGImages)")
        self.require(self.root / VOC_DIR / "SegmentationClassAug", "SBD masks (SegmentationClassAug)")

    def image_path(self, image_id: str) -> Path:
        return self.root / VOC_DIR / "JPEGImages" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / VOC_DIR / "SegmentationClassAug" / f"{image_id}.png"

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb_image(self.require(self.image_path(image_id), f"image {image_id}"))
        label = self.load_label(image_id)
        check_pair(image, label, source=f"PASCAL {image_id}")
        return image, label

    def load_label(self, image_id: str) -> np.ndarray:
        return read_label(self.require(self.label_path(image_id), f"mask of {image_id}"), self.num_classes)
