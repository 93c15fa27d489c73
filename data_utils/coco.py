"""COCO-20i from the real on-disk layout: COCO 2014 JPEGs + ``instances_{train,val}2014.json`` (read with pycocotools).

Layout under the data root (``$DPCN_DATA``, default ``./data``)::

    coco/train2014/COCO_train2014_<n>.jpg, coco/val2014/COCO_val2014_<n>.jpg
    coco/annotations/instances_{train,val}2014.json
    coco/labels/{train2014,val2014}/<image stem>.png      written once by ``python -m data_utils.prepare coco``
    lists/coco/{train,test}.txt (+ .count), lists/coco/class_index_{train,test}.json

Label maps: the 80 category ids are mapped to 1..80 in sorted category-id order (the standard order). Instances are
painted largest first, so where instances overlap the smaller (usually the one in front) wins. Crowd annotations
(``iscrowd=1``) become 255 (ignore) where no non-crowd instance covers the pixel. Split "train" is train2014, "test" is
val2014; an image is listed when it has at least one annotation, and every listed image must be on disk.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .files import TEMP_SUFFIX, remove_orphan_temp_files
from .folds import COCO_CLASSES, CocoSplit, fold_classes
from .lists import FileSource, write_id_list
from .sources import MIN_CLASS_PIXELS, Split, check_split
from .validation import IGNORE_INDEX, DataError, check_label_values, check_pair, prepare_command, read_label, \
    read_rgb_image, require_path

COCO_DIR = Path("coco")
LIST_DIR = Path("lists") / "coco"
SPLIT_FOLDERS = {"train": "train2014", "test": "val2014"}


def load_coco_api(annotation_file: Path) -> Any:
    """A pycocotools ``COCO`` object (its loading chatter goes to stdout; keep it)."""
    from pycocotools.coco import COCO

    return COCO(str(annotation_file))


def category_to_index(coco: Any) -> dict[int, int]:
    """COCO category id -> contiguous class index 1..N in sorted category-id order."""
    cat_ids = sorted(coco.getCatIds())
    return {cat_id: i + 1 for i, cat_id in enumerate(cat_ids)}


def coco_label(coco: Any, image_info: dict, cat_index: dict[int, int]) -> np.ndarray:
    """The ``uint8 HxW`` class-index label of one image (see the module docstring for overlaps and crowds)."""
    h, w = int(image_info["height"]), int(image_info["width"])
    label = np.zeros((h, w), np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"], iscrowd=None))
    crowd = np.zeros((h, w), bool)
    with warnings.catch_warnings():
        # pycocotools' mask decoding trips a NumPy 2 copy-keyword DeprecationWarning that says nothing about the data
        warnings.simplefilter("ignore", DeprecationWarning)
        _paint_annotations(coco, anns, cat_index, label, crowd)
    label[crowd & (label == 0)] = IGNORE_INDEX
    return label


def _paint_annotations(coco: Any, anns: list[dict], cat_index: dict[int, int], label: np.ndarray,
                       crowd: np.ndarray) -> None:
    for ann in sorted((a for a in anns if not a.get("iscrowd", 0)), key=lambda a: -float(a.get("area", 0.0))):
        label[coco.annToMask(ann).astype(bool)] = cat_index[ann["category_id"]]
    for ann in anns:
        if ann.get("iscrowd", 0):
            crowd |= coco.annToMask(ann).astype(bool)


def listed_images(coco: Any) -> list[dict]:
    """Image records that have at least one annotation, sorted by file name."""
    infos = [coco.imgs[i] for i in coco.getImgIds() if coco.getAnnIds(imgIds=i, iscrowd=None)]
    return sorted(infos, key=lambda info: info["file_name"])


def write_coco_labels(root: str | Path, split: Split, progress: bool = True) -> list[str]:
    """Write label PNGs and the image list of ``split``; returns the image ids (file stems)."""
    from tqdm.auto import tqdm

    root = Path(root)
    folder = SPLIT_FOLDERS[check_split(split)]
    ann_file = require_path(root / COCO_DIR / "annotations" / f"instances_{folder}.json", "coco",
                            f"COCO {folder} annotations", root)
    image_dir = require_path(root / COCO_DIR / folder, "coco", f"COCO {folder} images", root)
    coco = load_coco_api(ann_file)
    cat_index = category_to_index(coco)
    if len(cat_index) != len(COCO_CLASSES):
        raise DataError(f"{ann_file} has {len(cat_index)} categories, expected {len(COCO_CLASSES)}")
    infos = listed_images(coco)
    missing = [info["file_name"] for info in infos if not (image_dir / info["file_name"]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(infos)} COCO {folder} images named in {ann_file.name} are missing "
                        f"from {image_dir} (first: {missing[:3]}); download and extract them with: "
                        f"{prepare_command('coco')} --root {root}")
    out_dir = root / COCO_DIR / "labels" / folder
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_orphan_temp_files(out_dir)
    ids = []
    for info in tqdm(infos, desc=f"COCO {folder} labels", disable=not progress):
        stem = Path(info["file_name"]).stem
        target = out_dir / f"{stem}.png"
        if not target.is_file():  # renamed into place when complete, so a file that exists is whole
            temp = out_dir / f".{target.name}{TEMP_SUFFIX}"  # the name remove_orphan_temp_files clears
            Image.fromarray(coco_label(coco, info, cat_index)).save(temp, format="PNG")  # uint8 HxW -> 8-bit grey
            os.replace(temp, target)  # no fsync per file: 120,000 label maps; a kill leaves only the temp file
        ids.append(stem)
    remove_orphan_temp_files(root / LIST_DIR)
    write_id_list(root / LIST_DIR / f"{split}.txt", ids)
    return ids


class CocoSource(FileSource):
    """COCO 2014 as a source; ids are file stems such as ``COCO_val2014_000000000042``."""

    name = "coco"
    classes = COCO_CLASSES
    list_dir = LIST_DIR
    describe = "COCO-20i"

    def __init__(
        self,
        root: str | Path | None = None,
        coco_split: CocoSplit = "interleaved",
        min_pixels: int = MIN_CLASS_PIXELS,
    ) -> None:
        super().__init__(root, min_pixels)
        if coco_split not in ("interleaved", "consecutive"):
            raise ValueError(f"coco_split must be 'interleaved' or 'consecutive', got {coco_split!r}")
        self.coco_split = coco_split
        self.require(self.root / COCO_DIR, "COCO 2014 folder")

    def fold_classes(self, fold: int, split: Split = "test") -> list[int]:
        return fold_classes("coco", fold, split, self.coco_split)

    @staticmethod
    def _folder(image_id: str) -> str:
        for folder in SPLIT_FOLDERS.values():
            if f"_{folder}_" in image_id:
                return folder
        raise ValueError(f"unknown COCO image id {image_id!r}; ids look like 'COCO_val2014_000000000042'")

    def image_path(self, image_id: str) -> Path:
        return self.root / COCO_DIR / self._folder(image_id) / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / COCO_DIR / "labels" / self._folder(image_id) / f"{image_id}.png"

    def load_label(self, image_id: str) -> np.ndarray:
        path = self.require(self.label_path(image_id), f"label map of {image_id}")
        label = read_label(path, self.num_classes)
        check_label_values(label, self.num_classes, str(path))
        return label

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb_image(self.require(self.image_path(image_id), f"image {image_id}"))
        label = self.load_label(image_id)
        check_pair(image, label, source=f"COCO {image_id}")
        return image, label

    def __repr__(self) -> str:
        return f"CocoSource(root={str(self.root)!r}, coco_split={self.coco_split!r})"
