"""One episode of your own files: a support image, its mask, a query image -> the predicted mask of the query.

    python -m dpcn_lite predict --support-image S.jpg --support-mask M.png --query-image Q.jpg --out prediction.png

From Python: :func:`predict_episode` takes paths or arrays and returns a :class:`Prediction`; :func:`load_model`
gives the shipped DPCN checkpoint (default), a run folder's model or a checkpoint file's.

**The mask format.** A lossless, single-channel image (PNG: grey ``L``, palette ``P`` or 1-bit), the size of its
support image, where **every nonzero value is the object** and 0 is the background (255 on 0, as most paint
programs save it, is the usual case). A grey image stored as RGB (the three channels equal) is accepted too. Refused,
with a :class:`~data_utils.errors.DataError` that says what to do: a mask of another size than its support image,
an empty mask (no nonzero pixel), a colour mask (channels differ), a JPEG mask (its compression noise would turn
background pixels nonzero), 16-bit masks, and any file that cannot be read.

The images are prepared exactly like test episodes (longer side resized to the model's size, normalised, padded
bottom/right), and the prediction is brought back to the query's original size the way the evaluation does
(:func:`dpcn_lite.metrics.prediction_at_original_size`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from data_utils.errors import BadArgumentError, DataError
from data_utils.transforms import test_transform
from data_utils.validation import read_rgb_image
from dpcn_lite.base import FewShotSegmenter
from dpcn_lite.metrics import prediction_at_original_size

DEFAULT_CHECKPOINT = "cpu-synthetic-fold0"
"""The shipped DPCN checkpoint used when no checkpoint is named."""

MASK_HELP = ("a single-channel PNG the size of its support image, the object nonzero (e.g. 255) and the background 0")

ImageInput = str | Path | np.ndarray


@dataclass
class Prediction:
    """What :func:`predict_episode` returns; every array is at its image's original size."""

    support_image: np.ndarray
    """uint8 H_s x W_s x 3."""
    support_mask: np.ndarray
    """uint8 H_s x W_s, 0/1."""
    query_image: np.ndarray
    """uint8 H_q x W_q x 3."""
    mask: np.ndarray
    """uint8 H_q x W_q, 0/1: the predicted mask (argmax of the logits at the original size)."""
    probability: np.ndarray
    """float32 H_q x W_q in [0, 1]: the foreground probability."""

    @property
    def foreground_fraction(self) -> float:
        """Share of the query's pixels predicted as the object."""
        return float(self.mask.mean())


def _name(source: ImageInput, what: str) -> str:
    return f"{what} {Path(source).name}" if isinstance(source, (str, Path)) else f"{what} (array)"


def read_image(source: ImageInput, what: str = "image") -> np.ndarray:
    """An RGB ``uint8 HxWx3`` image from a file (``data_utils.validation.read_rgb_image``'s rules) or an array."""
    if isinstance(source, (str, Path)):
        return read_rgb_image(source)
    array = np.asarray(source)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise DataError(f"{_name(source, what)}: expected a uint8 H x W x 3 array, got {array.dtype} "
                        f"{tuple(array.shape)}.")
    return np.ascontiguousarray(array[..., :3])


def _open_mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"support mask not found: {path}. Give the path of {MASK_HELP}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError) as error:
        raise DataError(f"support mask {path.name} is not a readable image ({error}); save it as {MASK_HELP}.") \
            from None
    if image.format == "JPEG":
        raise DataError(f"support mask {path.name} is a JPEG: its compression noise makes background pixels nonzero. "
                        f"Save the mask as {MASK_HELP}.")
    if image.mode in ("1", "L", "P"):
        return np.array(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    if image.mode in ("LA", "PA"):
        return np.array(image.getchannel(0), dtype=np.uint8)
    if image.mode in ("RGB", "RGBA"):
        rgb = np.array(image.convert("RGB"), dtype=np.uint8)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].copy()
        raise DataError(f"support mask {path.name} is a colour image (its channels differ); save it as {MASK_HELP}.")
    raise DataError(f"support mask {path.name} has pixel mode {image.mode!r} (16-bit or floating point); save it as "
                    f"{MASK_HELP}.")


def read_mask(source: ImageInput, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """A support mask as ``uint8 HxW`` 0/1 (nonzero = object), checked against its image's size ``image_hw``."""
    if isinstance(source, (str, Path)):
        values = _open_mask(Path(source))
    else:
        values = np.asarray(source)
        if values.ndim != 2:
            raise DataError(f"support mask (array): expected H x W, got shape {tuple(values.shape)}.")
    name = _name(source, "support mask")
    if image_hw is not None and tuple(values.shape) != tuple(image_hw):
        raise DataError(f"{name} is {values.shape[1]}x{values.shape[0]} (width x height) but its support image is "
                        f"{image_hw[1]}x{image_hw[0]}: draw the mask on the support image itself, at its size.")
    mask = (values != 0).astype(np.uint8)
    if not mask.any():
        raise DataError(f"{name} is empty (every pixel is 0): mark the object with a nonzero value, e.g. 255 on a 0 "
                        "background.")
    return mask


def load_model(checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> FewShotSegmenter:
    """The model to predict with: the shipped DPCN (``None`` or a shipped name), a run folder or a checkpoint file."""
    from dpcn_lite.checkpoint import available_pretrained, load_pretrained, load_trained_model
    from dpcn_lite.errors import CheckpointError

    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint in available_pretrained()):
        return load_pretrained(checkpoint or DEFAULT_CHECKPOINT, device=device)
    path = Path(checkpoint)
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise CheckpointError(f"The folder {path} holds no checkpoint.pt: give a run folder written by "
                                  "`python -m dpcn_lite train`, a checkpoint file, or leave --checkpoint out to use "
                                  f"the shipped {DEFAULT_CHECKPOINT}.")
        path = path / "checkpoint.pt"
    model, _ = load_trained_model(path, device)
    return model.eval()


def read_episode(support_image: ImageInput, support_mask: ImageInput,
                 query_image: ImageInput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check the three inputs (before any model is loaded): ``(support, mask 0/1, query)``."""
    support = read_image(support_image, "support image")
    mask = read_mask(support_mask, support.shape[:2])
    query = read_image(query_image, "query image")
    return support, mask, query


@torch.no_grad()
def predict_episode(model: FewShotSegmenter, support_image: ImageInput, support_mask: ImageInput,
                    query_image: ImageInput, device: str | torch.device | None = None) -> Prediction:
    """Segment ``query_image`` for the object marked in ``support_mask`` on ``support_image`` (paths or arrays).

    The inputs are prepared like test episodes at the model's image size; the mask and probability come back at the
    query's original size.
    """
    support, mask, query = read_episode(support_image, support_mask, query_image)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    transform = test_transform(model.config.image_size, model.normalization)
    support_tensor, support_label = transform(support, mask)
    query_tensor, _ = transform(query, np.zeros(query.shape[:2], dtype=np.uint8))
    logits = model(query_tensor[None].to(device), support_tensor[None, None].to(device),
                   support_label[None, None].to(device)).logits[0].float().cpu()
    original_hw = query.shape[:2]
    valid_h, valid_w = transform.valid_hw(original_hw)
    predicted = prediction_at_original_size(logits, (valid_h, valid_w), original_hw)
    resized = F.interpolate(logits[None, :, :valid_h, :valid_w], size=original_hw, mode="bilinear",
                            align_corners=True)[0]
    probability = resized.softmax(dim=0)[1]
    return Prediction(support_image=support, support_mask=mask, query_image=query,
                      mask=predicted.numpy().astype(np.uint8), probability=probability.numpy().astype(np.float32))


def write_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Save a 0/1 mask as an 8-bit grey PNG, object 255 and background 0 (the format :func:`read_mask` reads)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BadArgumentError(f"The mask is written as PNG; give a path ending in .png, not {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask) != 0).astype(np.uint8) * 255).save(path, format="PNG")
    return path


def mask_path_for(figure_path: str | Path) -> Path:
    """Where the CLI writes the predicted mask beside its figure: ``prediction.png`` -> ``prediction-mask.png``."""
    figure_path = Path(figure_path)
    return figure_path.with_name(f"{figure_path.stem}-mask.png")


__all__ = ["DEFAULT_CHECKPOINT", "Prediction", "load_model", "mask_path_for", "predict_episode", "read_episode",
           "read_image", "read_mask", "write_mask"]
