"""Derived files that know what they hold: id lists with their count, class indices keyed by what they were built from.

``lists/<dataset>/<split>.txt`` keeps one id per line (what PFENet-style tools read); ``<split>.count`` beside it
holds the number of ids written. Both are written atomically. A list whose ids do not match the count, or whose last
line lacks its newline (cut mid-id), is a ``DataError`` naming the prepare command that rewrites it.

``class_index_<split>.json`` stores, next to the index, a sha256 *key* over the list, each label file's size and
mtime (nanoseconds), ``min_pixels`` and the number of classes. When any of them changes (an edited mask, a new list, a
different threshold) the index is rebuilt; an unreadable or truncated file is rebuilt with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from abc import abstractmethod
from pathlib import Path

from .errors import DataError
from .files import atomic_write_text, strict_json
from .sources import MIN_CLASS_PIXELS, SegmentationSource, Split, build_class_index, check_split, default_data_root
from .validation import prepare_command, require_path

log = logging.getLogger(__name__)


def count_path(list_path: Path) -> Path:
    """``train.txt`` -> ``train.count``."""
    return list_path.with_suffix(".count")


def write_id_list(path: Path, ids: list[str]) -> None:
    """Write one id per line, then the count beside it; each file atomically (a crash leaves old or new)."""
    atomic_write_text("".join(f"{i}\n" for i in ids), path)
    atomic_write_text(f"{len(ids)}\n", count_path(path))


def read_id_list(path: Path, dataset: str, root: Path) -> list[str]:
    """The ids of a derived list, checked against its count file (a list without one cannot be checked: a warning)."""
    text = path.read_text()
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    rewrite = f"{prepare_command(dataset)} --root {root} --skip-download"
    try:
        expected: int | None = int(count_path(path).read_text().strip())
    except FileNotFoundError:
        log.warning("%s has no %s, so its completeness cannot be checked; rewrite it with: %s", path,
                    count_path(path).name, rewrite)
        return ids
    except (OSError, ValueError):
        expected = None
    if expected != len(ids) or (text and not text.endswith("\n")):
        raise DataError(f"{path} holds {len(ids)} ids but {count_path(path).name} says {expected}: the list is "
                        f"truncated or was edited. Rewrite it with: {rewrite}")
    return ids


class FileSource(SegmentationSource):
    """A dataset read from files under ``root``: derived lists, the cached class index and missing files alike."""

    list_dir: Path = Path("lists")
    describe: str = ""  # "PASCAL-5i", ...

    def __init__(self, root: str | Path | None = None, min_pixels: int = MIN_CLASS_PIXELS) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else default_data_root()
        self.min_pixels = int(min_pixels)
        self._ids: dict[str, list[str]] = {}

    @abstractmethod
    def image_path(self, image_id: str) -> Path:
        """Where the image of ``image_id`` lives."""

    @abstractmethod
    def label_path(self, image_id: str) -> Path:
        """Where the class-index PNG of ``image_id`` lives."""

    def require(self, path: Path, what: str) -> Path:
        """``path`` if it exists, else ``DatasetNotFoundError`` naming ``python -m data_utils.prepare <name> --root``."""
        return require_path(path, self.name, what, self.root)

    def image_ids(self, split: Split) -> list[str]:
        check_split(split)
        if split not in self._ids:
            path = self.require(self.root / self.list_dir / f"{split}.txt", f"derived {self.describe} {split} list")
            self._ids[split] = read_id_list(path, self.name, self.root)
        return self._ids[split]

    def _compute_class_index(self, split: Split) -> dict[int, list[str]]:
        return cached_class_index(self, self.root / self.list_dir / f"class_index_{split}.json", split)


def class_index_key(source: FileSource, ids: list[str]) -> str:
    """sha256 over what the index is computed from: the ids, each label's size and mtime, the threshold, N."""
    digest = hashlib.sha256(f"{source.name} {source.num_classes} {source.min_pixels}\n".encode())
    for image_id in ids:
        path = source.label_path(image_id)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            source.require(path, f"label of {image_id}")
            raise
        digest.update(f"{image_id} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _stored_index(path: Path, key: str, num_classes: int) -> dict[int, list[str]] | None:
    """The index in ``path`` when it was built from the same inputs; None when absent, stale or unreadable."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") != key:
            return None
        index = {int(c): [str(i) for i in v] for c, v in stored["index"].items()}
        if sorted(index) != list(range(1, num_classes + 1)):
            raise ValueError("classes missing")
        return index
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
        log.warning("%s is unreadable (%s); rebuilding it", path, err)
        return None


def cached_class_index(source: FileSource, path: Path, split: Split) -> dict[int, list[str]]:
    """Read the class index from ``path`` when its key matches the current inputs, else build it and write it."""
    ids = source.image_ids(split)
    key = class_index_key(source, ids)
    index = _stored_index(path, key, source.num_classes)
    if index is None:
        index = build_class_index(ids, source.load_label, source.num_classes, source.min_pixels,
                                  desc=f"{source.name} {split}: 2,048-pixel rule")
        record = {"key": key, "min_pixels": source.min_pixels, "num_classes": source.num_classes,
                  "num_images": len(ids), "index": index}
        atomic_write_text(strict_json(record), path)
    return index
