"""Backbone features computed once per image, so a frozen-backbone head trains many times faster.

When the whole backbone is frozen (the ``cpu`` preset, and the paper's COCO setting), its output for an image never
changes during training: the BatchNorm statistics are frozen too and there is no augmentation to vary the input.
Running the backbone on every episode is then wasted work. :class:`FeatureCache` stores ``BackboneFeatures(mid, high)``
per image id the first time an image is seen (or all at once with :meth:`FeatureCache.fill`), and hands back the
stacked features of an episode batch for ``model.loss(batch, features=...)``.

The price: training sees every image exactly as the test transform presents it (no random scale, rotation, blur, flip
or crop). On the synthetic benchmark objects already vary in scale, position and rotation, so this costs little.
Features are stored as float16 by default (half the memory; the loss changes in the 3rd-4th digit), float32 is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from dpcn_lite.backbones import BackboneFeatures, EpisodeFeatures
from dpcn_lite.base import FewShotSegmenter


class FeatureCache:
    """Image id -> backbone features of that image, filled lazily from episode batches.

    >>> cache = FeatureCache(model, key="synthetic:categories-v2:160px:seed0")
    >>> loss = model.loss(batch, features=cache.episode_features(batch))

    Image ids repeat across datasets, benchmark versions, image sizes and rendering seeds ("train-00005" is another
    picture in each), so a cache never trusts an id alone:

    * each stored image keeps a fingerprint of its pixels (shape and two sums); an id that comes back with other
      pixels is refused with a clear error instead of being served stale features;
    * the cache carries the ``key`` of the images it holds, plus the backbone and storage type that made its features
      (:attr:`identity`); code that shares one cache between runs checks both with :meth:`check_key`
      (``dpcn_lite.experiment.source_key`` makes the key).
    """

    def __init__(self, model: FewShotSegmenter, dtype: torch.dtype = torch.float16, key: str = "") -> None:
        if model.backbone.has_trainable_parameters:
            raise ValueError(
                "The feature cache needs a fully frozen backbone, but this model fine-tunes its last backbone stage "
                "(train_layer4=True). Train through the backbone instead, or use a config with train_layer4=False."
            )
        self.model = model
        self.dtype = dtype
        self.key = key
        self._mid: dict[str, torch.Tensor] = {}
        self._high: dict[str, torch.Tensor] = {}
        self._fingerprints: dict[str, tuple] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def features_identity(model: FewShotSegmenter, dtype: torch.dtype) -> str:
        """What makes a feature besides the image: the backbone, its weights' origin, and the storage type."""
        config = model.config
        weights = getattr(config, "backbone_weights", None)
        origin = f" (weights {weights})" if weights else " (pretrained)" if config.pretrained else " (random init)"
        return f"{config.backbone}{origin} as {dtype}"

    @property
    def identity(self) -> str:
        """``key | backbone | dtype``: everything that decides the stored features."""
        return f"{self.key or 'unnamed images'} | {self.features_identity(self.model, self.dtype)}"

    def check_key(self, key: str, model: FewShotSegmenter | None = None,
                  dtype: torch.dtype | None = None) -> "FeatureCache":
        """Raise unless this cache holds features of the images ``key`` names, made by ``model``'s backbone (when
        given) and stored as ``dtype`` (when given); returns the cache.

        A cache made without a key takes the key of the first run that checks it."""
        if not self.key:
            self.key = key
        wanted = self.features_identity(model or self.model, dtype or self.dtype)
        if self.key != key or wanted != self.features_identity(self.model, self.dtype):
            raise ValueError(f"This feature cache holds features of {self.identity!r}, not of "
                             f"'{key} | {wanted}': image ids repeat across datasets, benchmarks, sizes and seeds, and "
                             "features depend on the backbone and storage type. Use a fresh cache.")
        return self

    @staticmethod
    def _fingerprint(image: torch.Tensor) -> tuple:
        """Shape and two float64 sums of an image: cheap, and different for another rendering, size or picture."""
        values = image.detach().double()
        return tuple(image.shape), float(values.sum()), float((values * values).sum())

    def _check_same_pixels(self, image_ids: Sequence[str], images: torch.Tensor) -> None:
        for image_id, image in zip(image_ids, images):
            stored = self._fingerprints.get(image_id)
            if stored is not None and stored != self._fingerprint(image):
                raise ValueError(
                    f"Image {image_id!r} arrived with other pixels than the cached one (another dataset, benchmark, "
                    "image size or rendering seed): this cache would serve stale features. Use one FeatureCache per "
                    "source and image size (key=dpcn_lite.experiment.source_key(cfg)).")

    def __len__(self) -> int:
        return len(self._mid)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._mid

    @property
    def nbytes(self) -> int:
        """Memory held by the stored features."""
        return sum(t.numel() * t.element_size() for store in (self._mid, self._high) for t in store.values())

    @torch.no_grad()
    def add(self, image_ids: Sequence[str], images: torch.Tensor) -> None:
        """Run the backbone (eval mode) on the images whose ids are not stored yet, and store their features.

        An id that is stored already must come with the same pixels (see the class docstring)."""
        self._check_same_pixels(image_ids, images)
        new = [i for i, image_id in enumerate(image_ids) if image_id not in self._mid]
        if not new:
            return
        was_training = self.model.backbone.training
        self.model.backbone.eval()
        try:
            # the backbone's device: a cache made on one device may be handed batches moved to another
            device = next((p.device for p in self.model.parameters()), images.device)
            features = self.model.extract_features(images[new].to(device))
        finally:
            self.model.backbone.train(was_training)
        for row, i in enumerate(new):
            self._fingerprints[image_ids[i]] = self._fingerprint(images[i])
            self._mid[image_ids[i]] = features.mid[row].to("cpu", self.dtype)
            self._high[image_ids[i]] = features.high[row].to("cpu", self.dtype)

    def fill(self, episodes: Iterable[dict], progress: bool = True) -> "FeatureCache":
        """Store the features of every image of a collated episode iterable (e.g. one pass of a DataLoader)."""
        for batch in tqdm(episodes, desc="caching backbone features", leave=False, disable=not progress):
            self._add_batch(batch)
        return self

    def _add_batch(self, batch: dict) -> None:
        query_ids = [str(i) for i in batch["query_id"]]
        support_ids = [[str(i) for i in ids] for ids in batch["support_ids"]]
        self.add(query_ids, batch["query_image"])
        supports = batch["support_images"]
        if supports.dim() == 4:
            supports = supports[:, None]
        self.add([i for ids in support_ids for i in ids], supports.flatten(0, 1))

    def lookup(self, image_ids: Sequence[str], device: torch.device | str = "cpu") -> BackboneFeatures:
        """Stacked float32 features ``N x ...`` of stored images, in the given order."""
        missing = [i for i in image_ids if i not in self._mid]
        if missing:
            raise KeyError(f"{len(missing)} image(s) are not cached yet (e.g. {missing[0]!r}); call add() or fill().")
        mid = torch.stack([self._mid[i] for i in image_ids]).to(device, torch.float32)
        high = torch.stack([self._high[i] for i in image_ids]).to(device, torch.float32)
        return BackboneFeatures(mid, high)

    def episode_features(self, batch: dict) -> EpisodeFeatures:
        """Query ``B x ...`` and support ``B x K x ...`` features of a collated batch; unseen images are computed now."""
        query_ids = [str(i) for i in batch["query_id"]]
        support_ids = [[str(i) for i in ids] for ids in batch["support_ids"]]
        seen = sum(i in self._mid for i in query_ids) + sum(i in self._mid for ids in support_ids for i in ids)
        total = len(query_ids) + sum(len(ids) for ids in support_ids)
        self.hits += seen
        self.misses += total - seen
        self._add_batch(batch)
        device = batch["query_image"].device
        query = self.lookup(query_ids, device)
        b, k = len(support_ids), len(support_ids[0])
        flat = self.lookup([i for ids in support_ids for i in ids], device)
        support = BackboneFeatures(flat.mid.view(b, k, *flat.mid.shape[1:]), flat.high.view(b, k, *flat.high.shape[1:]))
        return EpisodeFeatures(query, support)
