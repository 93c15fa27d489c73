"""Joint image/mask transforms (torchvision transforms v2) for episodes.

Training follows PFENet's augmentation (the one DPCN reuses): random scale [0.9, 1.1], random rotation [-10°, 10°]
with p = 0.5 (image filled with the mean colour, mask with 255), Gaussian blur k = 5 with p = 0.5, horizontal flip
p = 0.5, a random crop to ``size`` that pads with the mean colour / 255 and retries up to 30 times to keep >= 85% of
the foreground, then normalisation. Test: resize the longer side to ``size`` keeping the aspect ratio, normalise,
pad bottom/right to ``size x size`` (image 0 = the mean colour after normalisation, mask 255).

Every transform takes and returns ``(tv_tensors.Image uint8/float, tv_tensors.Mask)``; ``to_tv_tensors`` wraps numpy
arrays. The mask is the *binarised* episode mask (0/1/255) so padding and rotation fill land on 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .validation import IGNORE_INDEX


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std on the [0, 1] scale; the model picks the one its backbone was trained with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def mean_uint8(self) -> list[int]:
        return [int(round(m * 255)) for m in self.mean]

    @classmethod
    def of(cls, value: "Normalization | tuple[Sequence[float], Sequence[float]]") -> "Normalization":
        """Accept a ``Normalization`` or a ``(mean, std)`` pair, such as a model's ``model.normalization``."""
        if isinstance(value, cls):
            return value
        try:
            mean, std = value
            mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        except (TypeError, ValueError):
            raise TypeError(f"normalization must be a Normalization or a (mean, std) pair, got {value!r}") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"normalization needs 3 means and 3 positive stds, got mean={mean}, std={std}")
        return cls(mean=mean, std=std)


IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# EfficientNet-Lite0 (TF weights) expects (x * 255 - 127) / 128, i.e. mean = 127/255 and std = 128/255 on [0, 1].
EFFICIENTNET_LITE_NORMALIZATION = Normalization(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

ROTATION_DEGREES = 10.0
SCALE_RANGE = (0.9, 1.1)
BLUR_KERNEL = 5
# OpenCV's sigma for a 5x5 kernel when sigma=0 (PFENet calls cv2.GaussianBlur(image, (5, 5), 0)).
BLUR_SIGMA = 0.3 * ((BLUR_KERNEL - 1) * 0.5 - 1) + 0.8
CROP_TRIES = 30
CROP_KEEP_FOREGROUND = 0.85


def to_tv_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Wrap ``uint8 HxWx3`` and ``HxW`` numpy arrays as a ``(tv_tensors.Image 3xHxW, tv_tensors.Mask HxW)`` pair."""
    img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous())
    msk = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask)))
    return img, msk


def _image_of(flat_inputs: list[Any]) -> tv_tensors.Image:
    for item in flat_inputs:
        if isinstance(item, tv_tensors.Image):
            return item
    raise TypeError("these transforms need a tv_tensors.Image in their input")


def _mask_of(flat_inputs: list[Any]) -> tv_tensors.Mask | None:
    for item in flat_inputs:
        if isinstance(item, tv_tensors.Mask):
            return item
    return None


class RandomScale(v2.Transform):
    """Resize by one factor drawn from ``scale_range`` for both axes (the canvas size changes, as in PFENet)."""

    def __init__(self, scale_range: tuple[float, float] = SCALE_RANGE) -> None:
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _image_of(flat_inputs).shape[-2:]
        factor = float(torch.empty(1).uniform_(*self.scale_range))
        return {"size": [max(1, int(round(h * factor))), max(1, int(round(w * factor)))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            # masks are resized with nearest neighbour by torchvision whatever interpolation is passed
            return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        return inpt


class ForegroundKeepingCrop(v2.Transform):
    """Pad to at least ``size`` (image: ``fill``, mask: 255), then a random ``size x size`` crop that keeps >= 85%
    of the foreground (mask == 1); retried up to 30 times, after which the try that kept the most is used."""

    def __init__(self, size: int, fill: list[int], tries: int = CROP_TRIES, keep: float = CROP_KEEP_FOREGROUND):
        super().__init__()
        self.size = int(size)
        self.fill = fill
        self.tries = tries
        self.keep = keep

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _image_of(flat_inputs).shape[-2:]
        pad_h, pad_w = max(self.size - h, 0), max(self.size - w, 0)
        padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]  # left, top, right, bottom
        ph, pw = h + pad_h, w + pad_w
        mask = _mask_of(flat_inputs)
        fg = None
        if mask is not None:
            fg = torch.zeros((ph, pw), dtype=torch.bool)
            fg[padding[1]:padding[1] + h, padding[0]:padding[0] + w] = mask == 1
        total = int(fg.sum()) if fg is not None else 0
        best = None
        for _ in range(self.tries):
            top = int(torch.randint(0, ph - self.size + 1, (1,)))
            left = int(torch.randint(0, pw - self.size + 1, (1,)))
            kept = int(fg[top:top + self.size, left:left + self.size].sum()) if total else 0
            if best is None or kept > best[0]:
                best = (kept, top, left)
            if total == 0 or kept >= self.keep * total:
                break
        _, top, left = best
        return {"padding": padding, "top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            fill = IGNORE_INDEX
        elif isinstance(inpt, tv_tensors.Image):
            fill = self.fill
        else:
            return inpt
        if any(params["padding"]):
            inpt = F.pad(inpt, params["padding"], fill=fill)
        return F.crop(inpt, params["top"], params["left"], self.size, self.size)


class ResizeLongerSide(v2.Transform):
    """Resize so the longer side equals ``size`` and the aspect ratio is kept (mask: nearest neighbour)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _image_of(flat_inputs).shape[-2:]
        return {"size": list(resized_hw((h, w), self.size))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        return inpt


class PadBottomRight(v2.Transform):
    """Pad bottom/right to ``size x size``: images with ``image_fill`` (0 after normalisation), masks with 255."""

    def __init__(self, size: int, image_fill: float = 0.0) -> None:
        super().__init__()
        self.size = int(size)
        self.image_fill = image_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _image_of(flat_inputs).shape[-2:]
        return {"padding": [0, 0, max(self.size - w, 0), max(self.size - h, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        if isinstance(inpt, tv_tensors.Mask):
            return F.pad(inpt, params["padding"], fill=IGNORE_INDEX)
        if isinstance(inpt, tv_tensors.Image):
            return F.pad(inpt, params["padding"], fill=self.image_fill)
        return inpt


def resized_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """The size after resizing the longer side of ``hw`` to ``size`` with the aspect ratio kept."""
    h, w = int(hw[0]), int(hw[1])
    scale = size / max(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


class _ToModelInput(v2.Transform):
    """Image -> float32 normalised; mask -> int64 (0/1/255)."""

    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.to_float = v2.ToDtype(torch.float32, scale=True)
        normalization = Normalization.of(normalization)
        self.normalize = v2.Normalize(mean=list(normalization.mean), std=list(normalization.std))

    def forward(self, *inputs: Any) -> Any:
        image, mask = inputs if len(inputs) == 2 else inputs[0]
        image = self.normalize(self.to_float(image))
        return image, tv_tensors.Mask(mask.to(torch.int64))


class EpisodeTransform:
    """A joint transform for numpy ``(image, mask)`` pairs returning ``(float32 3xHxW, int64 HxW)`` tensors.

    ``valid_hw(original_hw)`` tells where the real image lies inside the output (test transforms pad bottom/right).
    """

    def __init__(self, pipeline: v2.Compose, size: int | None, pads_bottom_right: bool) -> None:
        self.pipeline = pipeline
        self.size = size
        self.pads_bottom_right = pads_bottom_right

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = self.pipeline(*to_tv_tensors(image, mask))
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)

    def valid_hw(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        if self.size is None:
            return int(original_hw[0]), int(original_hw[1])
        if self.pads_bottom_right:
            return resized_hw(original_hw, self.size)
        return self.size, self.size

    def __repr__(self) -> str:
        return f"EpisodeTransform({self.pipeline})"


def train_transform(size: int, normalization: Normalization = IMAGENET_NORMALIZATION) -> EpisodeTransform:
    """PFENet's training augmentation ending in a ``size x size`` crop and ``normalization``."""
    normalization = Normalization.of(normalization)
    mean = normalization.mean_uint8()
    pipeline = v2.Compose([
        RandomScale(SCALE_RANGE),
        v2.RandomApply([v2.RandomRotation(
            ROTATION_DEGREES,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill={tv_tensors.Image: mean, tv_tensors.Mask: IGNORE_INDEX},
        )], p=0.5),
        v2.RandomApply([v2.GaussianBlur(BLUR_KERNEL, sigma=BLUR_SIGMA)], p=0.5),
        v2.RandomHorizontalFlip(p=0.5),
        ForegroundKeepingCrop(size, fill=mean),
        _ToModelInput(normalization),
    ])
    return EpisodeTransform(pipeline, size, pads_bottom_right=False)


def test_transform(size: int, normalization: Normalization = IMAGENET_NORMALIZATION) -> EpisodeTransform:
    """Resize the longer side to ``size``, normalise, pad bottom/right to ``size x size`` (image 0, mask 255)."""
    pipeline = v2.Compose([ResizeLongerSide(size), _ToModelInput(normalization), PadBottomRight(size, 0.0)])
    return EpisodeTransform(pipeline, size, pads_bottom_right=True)


# pytest would otherwise collect the factory above as a test function
test_transform.__test__ = False  # type: ignore[attr-defined]


def plain_transform(normalization: Normalization = IMAGENET_NORMALIZATION) -> EpisodeTransform:
    """No geometry change: tensors and normalisation only (all images of an episode must then share one size)."""
    return EpisodeTransform(v2.Compose([_ToModelInput(normalization)]), None, pads_bottom_right=False)
