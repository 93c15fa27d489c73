"""PASCAL-5i from the real on-disk layout: VOC 2012 images + the SBD-augmented masks (``SegmentationClassAug``).

Layout under the data root (``$DPCN_DATA``, default ``./data``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png      class indices 0..20 and 255 (palette or grey PNG)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    benchmark_RELEASE/dataset/{train,val}.txt            SBD's own lists
    lists/pascal/{train,test}.txt                        derived by ``python -m data_utils.prepare pascal``
    lists/pascal/class_index_{train,test}.json           the 2,048-pixel rule, computed once

PFENet protocol: train = (VOC train ∪ SBD train) minus VOC val, deduplicated; test = VOC val (1,449 images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .folds import PASCAL_CLASSES
from .sources import MIN_CLASS_PIXELS, SegmentationSource, Split, build_class_index, check_split, default_data_root
from .validation import DataError, check_pair, read_label, read_rgb_image, require_path

VOC_DIR = Path("VOCdevkit") / "VOC2012"
SBD_LIST_DIR = Path("benchmark_RELEASE") / "dataset"
LIST_DIR = Path("lists") / "pascal"


def _read_id_list(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def derive_pascal_lists(root: str | Path) -> dict[str, list[str]]:
    """Derive and write the PFENet lists from VOC's and SBD's own list files; returns ``{"train": ids, "test": ids}``.

    Every listed id must have its JPEG and its SegmentationClassAug mask; missing files are an error (not skipped).
    """
    root = Path(root)
    seg_lists = root / VOC_DIR / "ImageSets" / "Segmentation"
    voc_train = _read_id_list(require_path(seg_lists / "train.txt", "pascal", "VOC 2012 train list", root))
    voc_val = _read_id_list(require_path(seg_lists / "val.txt", "pascal", "VOC 2012 val list", root))
    sbd_train = _read_id_list(require_path(root / SBD_LIST_DIR / "train.txt", "pascal", "SBD train list", root))
    val = set(voc_val)
    lists = {"train": sorted((set(voc_train) | set(sbd_train)) - val), "test": sorted(val)}
    images = require_path(root / VOC_DIR / "JPEGImages", "pascal", "VOC JPEGImages folder", root)
    masks = require_path(root / VOC_DIR / "SegmentationClassAug", "pascal", "SegmentationClassAug folder", root)
    for split, ids in lists.items():
        missing = [i for i in ids if not (images / f"{i}.jpg").is_file() or not (masks / f"{i}.png").is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} PASCAL {split} images lack a JPEG or a SegmentationClassAug mask "
                f"(first: {missing[:3]}); re-extract the archives with: python -m data_utils.prepare pascal"
            )
    out = root / LIST_DIR
    out.mkdir(parents=True, exist_ok=True)
    for split, ids in lists.items():
        (out / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return lists


class PascalSource(SegmentationSource):
    """PASCAL VOC 2012 + SBD masks; ids are VOC ids such as ``2007_000032``."""

    name = "pascal"
    classes = PASCAL_CLASSES

    def __init__(self, root: str | Path | None = None, min_pixels: int = MIN_CLASS_PIXELS) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else default_data_root()
        self.min_pixels = int(min_pixels)
        require_path(self.root / VOC_DIR / "JPEGImages", "pascal", "PASCAL VOC 2012 (JPEGImages)", self.root)
        require_path(self.root / VOC_DIR / "SegmentationClassAug", "pascal", "SBD masks (SegmentationClassAug)",
                     self.root)
        self._ids: dict[str, list[str]] = {}

    def image_ids(self, split: Split) -> list[str]:
        check_split(split)
        if split not in self._ids:
            path = require_path(self.root / LIST_DIR / f"{split}.txt", "pascal", f"derived PASCAL-5i {split} list",
                                self.root)
            self._ids[split] = _read_id_list(path)
        return self._ids[split]

    def image_path(self, image_id: str) -> Path:
        return self.root / VOC_DIR / "JPEGImages" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        return self.root / VOC_DIR / "SegmentationClassAug" / f"{image_id}.png"

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb_image(self.image_path(image_id))
        label = read_label(self.label_path(image_id), self.num_classes)
        check_pair(image, label, source=f"PASCAL {image_id}")
        return image, label

    def load_label(self, image_id: str) -> np.ndarray:
        return read_label(self.label_path(image_id), self.num_classes)

    def _compute_class_index(self, split: Split) -> dict[int, list[str]]:
        return cached_class_index(self, self.root / LIST_DIR / f"class_index_{split}.json", split)


def cached_class_index(source: SegmentationSource, path: Path, split: Split) -> dict[int, list[str]]:
    """Read the class index from ``path`` when it was built with the same threshold and list, else build and write."""
    ids = source.image_ids(split)
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("min_pixels") == source.min_pixels and stored.get("num_images") == len(ids):
            return {int(c): v for c, v in stored["index"].items()}
    index = build_class_index(ids, source.load_label, source.num_classes, source.min_pixels,
                              desc=f"{source.name} {split}: 2,048-pixel rule")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"min_pixels": source.min_pixels, "num_images": len(ids), "index": index}))
    return index
