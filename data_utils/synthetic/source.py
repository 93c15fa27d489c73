"""The synthetic benchmark as a dataset source: image ids, rendering on demand with a small cache, and the 2,048-pixel
rule scaled to the image size.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..folds import SYNTHETIC_CLASSES
from ..sources import MIN_CLASS_PIXELS, SegmentationSource, Split, check_split
from .benchmarks import DEFAULT_BENCHMARK, SyntheticBenchmark, get_benchmark
from .layout import SPLIT_CODES, Layout, make_layout, render_holes, render_image, render_label

REFERENCE_SIZE = 473  # the paper's crop size: the 2,048-pixel rule is defined at this scale
DEFAULT_IMAGES_PER_CLASS: dict[str, int] = {"train": 50, "test": 20}


class SyntheticSource(SegmentationSource):
    """The synthetic benchmark as a source: ids are ``"train-00012"`` / ``"test-00007"``.

    ``images_per_class`` images per split have each named class as their primary class (image ``j`` has primary
    class ``j % 20 + 1``); distractors add more qualifying images per class. ``benchmark`` picks the version
    (``data_utils.synthetic.benchmarks``); with generated classes the training split continues with
    ``images_per_generated_class`` images for each of them (ids 21, 22, ...), and they train in every fold. The
    2,048-pixel rule is scaled with the image area: ``min_pixels = round(2048 * (image_size / 473)²)`` (234 px at 160,
    37 px at 64).
    """

    name = "synthetic"
    index_progress = False  # rendering the labels takes seconds; a bar would only clutter notebook outputs

    def __init__(
        self,
        image_size: int = 160,
        seed: int = 0,
        images_per_class: int | dict[str, int] | None = None,
        supersample: int = 2,
        cache_size: int = 128,
        benchmark: str | SyntheticBenchmark = DEFAULT_BENCHMARK,
    ) -> None:
        super().__init__()
        self.benchmark = get_benchmark(benchmark)
        self.classes = SYNTHETIC_CLASSES + tuple(
            f"generated {i:03d}" for i in range(1, self.benchmark.generated_classes + 1))
        if int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        self.image_size = int(image_size)
        self.seed = int(seed)
        if images_per_class is None:
            images_per_class = dict(DEFAULT_IMAGES_PER_CLASS)
        elif isinstance(images_per_class, int):
            images_per_class = {"train": images_per_class, "test": images_per_class}
        self.images_per_class = {s: int(images_per_class[s]) for s in ("train", "test")}
        if min(self.images_per_class.values()) < 1:
            raise ValueError(f"images_per_class must be >= 1, got {self.images_per_class}")
        self.supersample = int(supersample)
        self.min_pixels = max(1, int(round(MIN_CLASS_PIXELS * (self.image_size / REFERENCE_SIZE) ** 2)))
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = int(cache_size)

    def num_images(self, split: Split) -> int:
        named = self.images_per_class[check_split(split)] * len(SYNTHETIC_CLASSES)
        if split == "train":
            return named + self.benchmark.generated_classes * self.benchmark.images_per_generated_class
        return named

    def fold_classes(self, fold: int, split: Split = "test") -> list[int]:
        """The fold's named classes; for ``split="train"`` also every generated class (they are never tested)."""
        named = super().fold_classes(fold, split)
        if split == "train":
            return named + list(range(len(SYNTHETIC_CLASSES) + 1, self.num_classes + 1))
        return named

    def image_ids(self, split: Split) -> list[str]:
        return [f"{split}-{j:05d}" for j in range(self.num_images(split))]

    def _parse(self, image_id: str) -> tuple[str, int]:
        split, _, number = str(image_id).partition("-")
        if split not in SPLIT_CODES or not number.isdigit() or int(number) >= self.num_images(split):
            raise ValueError(
                f"unknown synthetic image id {image_id!r}; ids look like 'train-00012' with the number below "
                f"{self.num_images('train')} (train) or {self.num_images('test')} (test)"
            )
        return split, int(number)

    def layout(self, image_id: str) -> Layout:
        split, index = self._parse(image_id)
        return make_layout(self.seed, split, index, self.image_size, len(SYNTHETIC_CLASSES), self.benchmark,
                           self.images_per_class[split])

    def holes(self, image_id: str, class_id: int) -> np.ndarray:
        """Boolean mask of ``class_id``'s hole pixels in the image (see ``layout.render_holes``)."""
        return render_holes(self.layout(image_id), self.image_size, int(class_id))

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            image, label = self._cache[image_id]
        else:
            layout = self.layout(image_id)
            image = render_image(layout, self.image_size, self.supersample)
            label = render_label(layout, self.image_size)
            if self._cache_size > 0:
                self._cache[image_id] = (image, label)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return image.copy(), label.copy()

    def load_label(self, image_id: str) -> np.ndarray:
        if image_id in self._cache:
            return self._cache[image_id][1].copy()
        return render_label(self.layout(image_id), self.image_size)

    def __repr__(self) -> str:
        return (f"SyntheticSource(image_size={self.image_size}, seed={self.seed}, "
                f"images_per_class={self.images_per_class})")
