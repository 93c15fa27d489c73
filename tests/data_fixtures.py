"""Writers of tiny datasets in the real on-disk formats (VOC + SBD lists + SegmentationClassAug, COCO 2014)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from data_utils.folds import PASCAL_CLASSES
from data_utils.sources import SegmentationSource

# The 80 COCO 2014 category ids (1..90 with the 10 unused ids left out), written out independently of the code.
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
]


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), as a flat 768-entry palette."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def save_palette_png(label: np.ndarray, path: Path) -> None:
    """Write class indices as a palette ("P") PNG with the VOC colours, as SegmentationClassAug ships them."""
    img = Image.new("P", (label.shape[1], label.shape[0]))
    img.frombytes(np.ascontiguousarray(label, dtype=np.uint8).tobytes())
    img.putpalette(voc_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def random_jpeg(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def box_label(h: int, w: int, boxes: list[tuple[int, int, int, int, int]], band: bool = True) -> np.ndarray:
    """A label with rectangles ``(class, top, left, height, width)`` and a 255 outline around each, like VOC."""
    label = np.zeros((h, w), np.uint8)
    for cls, top, left, bh, bw in boxes:
        if band:
            label[max(top - 1, 0):top + bh + 1, max(left - 1, 0):left + bw + 1] = 255
        label[top:top + bh, left:left + bw] = cls
    return label


# id -> (height, width, boxes). Image size 80 x 100 = 8,000 px; a 50x50 box (2,500 px) passes the 2,048-px rule,
# a 40x40 box (1,600 px) does not.
PASCAL_IMAGES: dict[str, tuple[int, int, list[tuple[int, int, int, int, int]]]] = {
    "2007_000001": (80, 100, [(1, 10, 10, 50, 50), (15, 5, 70, 20, 20)]),   # aeroplane big, person small
    "2007_000002": (80, 100, [(1, 20, 20, 40, 40)]),                        # aeroplane too small
    "2007_000003": (80, 100, [(1, 5, 5, 60, 60)]),                          # val
    "2007_000004": (80, 100, [(1, 15, 30, 55, 55), (2, 0, 0, 10, 10)]),     # val
    "2008_000005": (90, 70, [(1, 20, 10, 55, 50)]),                         # SBD only
    "2008_000006": (80, 100, [(3, 10, 10, 50, 50)]),                        # val
    "2008_000007": (80, 100, [(1, 10, 40, 50, 50)]),                        # val
    "2008_000008": (80, 100, [(1, 10, 10, 60, 60), (6, 0, 75, 50, 25)]),    # SBD train.txt only, not train_noval
}
VOC_TRAIN = ["2007_000001", "2007_000002"]
VOC_VAL = ["2007_000003", "2007_000004", "2008_000006", "2008_000007"]
# SBD's train.txt holds VOC val images and more; train_noval.txt is what PFENet trains on. This train_noval keeps one
# VOC val id that the derivation must still drop, and a duplicate of VOC train.
SBD_TRAIN = ["2007_000002", "2008_000005", "2007_000003", "2008_000008"]
SBD_TRAIN_NOVAL = ["2008_000005", "2007_000002", "2007_000003", "2008_000005"]


def write_pascal_fixture(root: Path) -> Path:
    """A VOC 2012 + SBD-lists + SegmentationClassAug layout under ``root``."""
    voc = root / "VOCdevkit" / "VOC2012"
    for n, (image_id, (h, w, boxes)) in enumerate(PASCAL_IMAGES.items()):
        random_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", h, w, n)
        save_palette_png(box_label(h, w, boxes), voc / "SegmentationClassAug" / f"{image_id}.png")
    seg = voc / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (seg / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    sbd = root / "benchmark_RELEASE" / "dataset"
    sbd.mkdir(parents=True, exist_ok=True)
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("2007_000004\n")
    (sbd / "train_noval.txt").write_text("\n".join(SBD_TRAIN_NOVAL) + "\n")
    return root


# id -> [(class, box side)] of a 32 x 32 label. With MULTI_MIN_PIXELS = 40 an 8-px box (64 px) counts, a 4-px box
# (16 px) does not. Fold 0 of PASCAL trains on classes 6..20 and tests on 1..5. Every training class is the first
# class of two images and the second of two more; some images add a novel class or a too-small training class; three
# images hold no eligible training class at all.
MULTI_MIN_PIXELS = 40
MULTI_CLASS_IMAGES: dict[str, list[tuple[int, int]]] = {
    f"img_{j:02d}": [(6 + j % 15, 8), (6 + (j + 5) % 15, 8)]
    + ([(1 + j % 5, 8)] if j % 4 == 0 else []) + ([(6 + (j + 9) % 15, 4)] if j % 5 == 0 else [])
    for j in range(30)
}
MULTI_CLASS_IMAGES.update({"img_30": [(2, 8), (3, 8)], "img_31": [(4, 8)], "img_32": [(7, 4), (5, 8)]})


class MultiClassSource(SegmentationSource):
    """PASCAL's classes in memory: 32 x 32 labels with several boxes each (flat grey images), for epoch rules."""

    name = "pascal"
    classes = PASCAL_CLASSES
    min_pixels = MULTI_MIN_PIXELS

    def image_ids(self, split: str) -> list[str]:
        return sorted(MULTI_CLASS_IMAGES)

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        corners = [(0, 0), (0, 16), (16, 0), (16, 16)]
        label = box_label(32, 32, [(c, *corners[n], side, side) for n, (c, side) in
                                   enumerate(MULTI_CLASS_IMAGES[image_id])], band=False)
        return np.full((32, 32, 3), 128, np.uint8), label


def _polygon(top: int, left: int, h: int, w: int) -> list[list[float]]:
    return [[left, top, left + w, top, left + w, top + h, left, top + h]]


# file stem -> (height, width, [(category id, top, left, h, w, iscrowd)])
COCO_IMAGES = {
    "train2014": {
        "COCO_train2014_000000000001": (80, 100, [(1, 10, 10, 50, 50, 0), (18, 20, 20, 20, 20, 0),
                                                  (1, 55, 65, 20, 30, 1)]),
        "COCO_train2014_000000000002": (80, 100, [(90, 10, 30, 50, 50, 0)]),
        "COCO_train2014_000000000003": (80, 100, []),  # no annotation: not listed
        "COCO_train2014_000000000004": (80, 100, [(90, 20, 20, 55, 55, 0)]),
    },
    "val2014": {
        "COCO_val2014_000000000011": (80, 100, [(5, 5, 5, 55, 55, 0)]),
        "COCO_val2014_000000000012": (80, 100, [(5, 5, 5, 40, 40, 0), (1, 20, 45, 50, 50, 0)]),
        "COCO_val2014_000000000013": (80, 100, [(5, 20, 40, 50, 50, 0)]),
    },
}


def write_coco_fixture(root: Path) -> Path:
    """COCO 2014 layout under ``root/coco``: JPEGs and instances JSONs (polygons, a crowd RLE, an overlap)."""
    from data_utils.folds import COCO_CLASSES

    categories = [{"id": cid, "name": name, "supercategory": "x"} for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]
    coco = root / "coco"
    ann_id = 1
    for folder, images in COCO_IMAGES.items():
        infos, anns = [], []
        for n, (stem, (h, w, objects)) in enumerate(images.items()):
            image_id = int(stem.rsplit("_", 1)[1])
            random_jpeg(coco / folder / f"{stem}.jpg", h, w, 100 + n)
            infos.append({"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w})
            for cat, top, left, bh, bw, crowd in objects:
                if crowd:
                    mask = np.zeros((h, w), np.uint8)
                    mask[top:top + bh, left:left + bw] = 1
                    segmentation = _uncompressed_rle(mask)
                else:
                    segmentation = _polygon(top, left, bh, bw)
                anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": segmentation,
                             "area": float(bh * bw), "bbox": [left, top, bw, bh], "iscrowd": crowd})
                ann_id += 1
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / f"instances_{folder}.json").write_text(
            json.dumps({"images": infos, "annotations": anns, "categories": categories})
        )
    return root


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.astype(np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def write_png_16bit_rgb(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG written byte by byte (Pillow cannot write one): signature, IHDR (bit depth 16,
    colour type 2), one zlib IDAT of filter-0 scanlines of big-endian samples, IEND."""
    h, w, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path
