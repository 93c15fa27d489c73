"""1-way K-shot episodes for every source, following the PFENet protocol.

* A query is an (image, class) pair where the class qualifies in the image (2,048-pixel rule) and belongs to the
  fold's classes of the split (test: the 5/20 novel classes; train: the others).
* Its label is binarised: chosen class -> 1, 255 stays 255, everything else -> 0. Objects of other classes,
  novel ones included, become background in training images.
* K distinct supports are drawn from the other qualifying images of the same class (never the query itself).
* Test episodes are a fixed list drawn once from ``np.random.default_rng([seed, fold, shots])`` over sorted inputs,
  so the same seed gives the same (query, class, supports) in every process and on every machine. The queries are a
  seeded permutation of all (image, class) pairs, taken cyclically (every pair once before any repeats).
* Training episodes are random: episode ``i`` of epoch ``e`` comes from ``default_rng([seed, e, i])``, so DataLoader
  workers agree without sharing state; call ``set_epoch`` to get new episodes each epoch.
* ``per_image=True`` is PFENet's training epoch: one pass over the images that hold at least one eligible class, each
  image once, in a seeded order per epoch, with the episode's class drawn among that image's eligible classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .sources import SegmentationSource, Split, check_split
from .transforms import IMAGENET_NORMALIZATION, plain_transform
from .validation import IGNORE_INDEX, DataError, check_pair, check_shots

DEFAULT_TEST_EPISODES = 1000
_TRAIN_STREAM = 0x7EA1  # separates training draws from the test list in the RNG's seed sequence
# Per-image epochs: one stream orders the images, the other draws each episode's class and supports. They differ so
# that [seed, order, e] can never equal [seed, episode, e, 0] (a seed sequence ignores trailing zeros).
_IMAGE_ORDER_STREAM = 0x1A6E
_IMAGE_EPISODE_STREAM = 0x1A6F


@dataclass(frozen=True)
class EpisodeSpec:
    """Which images make one episode (the part that must be reproducible)."""

    query_id: str
    class_id: int
    support_ids: tuple[str, ...]


def binarize(label: np.ndarray, class_id: int) -> np.ndarray:
    """Chosen class -> 1, ignore (255) stays 255, everything else -> 0."""
    out = (label == class_id).astype(np.uint8)
    out[label == IGNORE_INDEX] = IGNORE_INDEX
    return out


class EpisodeDataset(Dataset):
    """Episodes of ``source`` for ``fold``; items are dicts as specified in ``docs/architecture.md``."""

    def __init__(
        self,
        source: SegmentationSource,
        fold: int,
        split: Split,
        shots: int,
        episodes: int | None = DEFAULT_TEST_EPISODES,
        seed: int = 0,
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]] | None = None,
        classes: Sequence[int] | None = None,
        fixed: bool | None = None,
        per_image: bool = False,
    ) -> None:
        """``classes`` overrides the fold's classes of ``split`` (e.g. to study one class); ids are checked.

        ``fixed`` (default: only for the test split) draws one seeded episode list and adds the evaluation keys, so
        ``dpcn_lite.evaluate`` can also score training images (the diagnosis's training fit).

        ``episodes=None`` is one pass: one episode per (image, class) pair, or with ``per_image=True`` one per image
        (PFENet's epoch, for training; not with ``fixed``). A per-image epoch has exactly one episode per eligible
        image, so any other number is refused.
        """
        self.source = source
        self.fold = fold
        self.split = check_split(split)
        self.shots = check_shots(shots)
        if episodes is not None and int(episodes) < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.seed = int(seed)
        self.per_image = bool(per_image)
        self.transform = transform if transform is not None else plain_transform(IMAGENET_NORMALIZATION)
        fold_classes = source.fold_classes(fold, split)
        if classes is None:
            self.classes = fold_classes
        else:
            unknown = [c for c in classes if int(c) not in range(1, source.num_classes + 1)]
            if unknown:
                raise ValueError(f"unknown class ids {unknown} for {source.name}: ids are 1..{source.num_classes}")
            self.classes = sorted(int(c) for c in classes)
        index = source.class_index(split)
        self.candidates: dict[int, list[str]] = {c: sorted(index.get(c, [])) for c in self.classes}
        too_few = {c: len(v) for c, v in self.candidates.items() if len(v) < self.shots + 1}
        if too_few:
            names = ", ".join(f"{source.class_name(c)} (id {c}): {n}" for c, n in too_few.items())
            raise DataError(
                f"{self.shots}-shot episodes need at least {self.shots + 1} usable images per class (the query plus "
                f"{self.shots} distinct supports) in the {split} split of {source.name}; too few for {names}. "
                f"Use fewer shots, more images, or a smaller min_pixels."
            )
        # all (image, class) pairs in a fixed order: class, then image id
        self.pairs: list[tuple[str, int]] = [(i, c) for c in self.classes for i in self.candidates[c]]
        # every image with at least one eligible class, sorted, with those classes in increasing order
        image_classes: dict[str, list[int]] = {}
        for image_id, class_id in self.pairs:
            image_classes.setdefault(image_id, []).append(class_id)
        self.image_classes: dict[str, tuple[int, ...]] = {i: tuple(image_classes[i]) for i in sorted(image_classes)}
        self.images: list[str] = list(self.image_classes)
        fixed = split == "test" if fixed is None else fixed
        if self.per_image and fixed:
            raise ValueError("per_image is PFENet's training epoch; a fixed (test) list takes (image, class) pairs")
        one_pass = len(self.images) if self.per_image else len(self.pairs)
        if self.per_image and episodes is not None and int(episodes) != one_pass:
            raise ValueError(f"a per-image epoch holds each of the {one_pass} eligible images once; got "
                             f"episodes={episodes} (pass episodes=None)")
        self.episodes = one_pass if episodes is None else int(episodes)
        self.epoch = 0
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, image permutation) of the last per-image epoch
        self._fixed: list[EpisodeSpec] | None = self._make_test_list() if fixed else None

    # ---------------------------------------------------------------------------------------------------------------
    def _draw_supports(self, rng: np.random.Generator, query_id: str, class_id: int) -> tuple[str, ...]:
        pool = [i for i in self.candidates[class_id] if i != query_id]
        picks = rng.choice(len(pool), size=self.shots, replace=False)
        return tuple(pool[int(p)] for p in picks)

    def _make_test_list(self) -> list[EpisodeSpec]:
        rng = np.random.default_rng([self.seed, int(self.fold), self.shots])
        order = rng.permutation(len(self.pairs))
        specs = []
        for n in range(self.episodes):
            query_id, class_id = self.pairs[int(order[n % len(order)])]
            specs.append(EpisodeSpec(query_id, class_id, self._draw_supports(rng, query_id, class_id)))
        return specs

    def set_epoch(self, epoch: int) -> None:
        """Training episodes depend on the epoch; test episodes never change."""
        self.epoch = int(epoch)

    def spec(self, index: int) -> EpisodeSpec:
        """The (query, class, supports) of episode ``index``."""
        if not 0 <= index < self.episodes:
            raise IndexError(f"episode {index} out of range 0..{self.episodes - 1}")
        if self._fixed is not None:
            return self._fixed[index]
        if self.per_image:
            query_id = self.images[int(self._image_order()[index])]
            rng = np.random.default_rng([self.seed, _IMAGE_EPISODE_STREAM, self.epoch, index])
            eligible = self.image_classes[query_id]
            class_id = eligible[int(rng.integers(len(eligible)))]
        else:
            rng = np.random.default_rng([self.seed, _TRAIN_STREAM, self.epoch, index])
            query_id, class_id = self.pairs[int(rng.integers(len(self.pairs)))]
        return EpisodeSpec(query_id, class_id, self._draw_supports(rng, query_id, class_id))

    def _image_order(self) -> np.ndarray:
        """The epoch's seeded permutation of ``images``: the loop's sampler visits indices in order, so the shuffling
        lives here; computed once per epoch and process, the same in every process."""
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, _IMAGE_ORDER_STREAM, self.epoch])
            self._order = (self.epoch, rng.permutation(len(self.images)))
        return self._order[1]

    def episode_list(self) -> list[EpisodeSpec]:
        """Every episode's spec (for test episodes: the fixed list)."""
        return [self.spec(i) for i in range(self.episodes)]

    # ---------------------------------------------------------------------------------------------------------------
    def _load_binary(self, image_id: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.source.load(image_id)
        check_pair(image, label, source=f"{self.source.name}:{image_id}")
        return image, binarize(label, class_id)

    def __len__(self) -> int:
        return self.episodes

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec = self.spec(int(index))
        query_image, query_mask = self._load_binary(spec.query_id, spec.class_id)
        q_img, q_mask = self.transform(query_image, query_mask)
        s_imgs, s_masks = [], []
        for support_id in spec.support_ids:
            img, mask = self.transform(*self._load_binary(support_id, spec.class_id))
            s_imgs.append(img)
            s_masks.append(mask)
        episode: dict[str, Any] = {
            "query_image": q_img,
            "query_mask": q_mask,
            "support_images": torch.stack(s_imgs),
            "support_masks": torch.stack(s_masks),
            "class_id": spec.class_id,
            "query_id": spec.query_id,
            "support_ids": list(spec.support_ids),
        }
        if self._fixed is not None:
            episode["query_label_original"] = torch.from_numpy(query_mask.astype(np.int64))
            valid = getattr(self.transform, "valid_hw", None)
            hw = valid(query_mask.shape) if valid is not None else tuple(q_mask.shape[-2:])
            episode["query_valid_hw"] = (int(hw[0]), int(hw[1]))
        return episode

    def __repr__(self) -> str:
        return (f"EpisodeDataset({self.source!r}, fold={self.fold}, split={self.split!r}, shots={self.shots}, "
                f"episodes={self.episodes}, seed={self.seed}{', per_image=True' if self.per_image else ''})")


_STACKED = ("query_image", "query_mask", "support_images", "support_masks")


def collate_episodes(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors into ``B x ...``; ids, valid sizes and the variable-size original labels stay lists."""
    if not batch:
        raise ValueError("cannot collate an empty list of episodes")
    out: dict[str, Any] = {key: torch.stack([ep[key] for ep in batch]) for key in _STACKED}
    out["class_id"] = torch.tensor([ep["class_id"] for ep in batch], dtype=torch.int64)
    out["query_id"] = [ep["query_id"] for ep in batch]
    out["support_ids"] = [ep["support_ids"] for ep in batch]
    if "query_label_original" in batch[0]:
        out["query_label_original"] = [ep["query_label_original"] for ep in batch]
        out["query_valid_hw"] = [ep["query_valid_hw"] for ep in batch]
    return out



def move_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A collated batch with its tensors on ``device`` (ids and original-size labels stay where they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
