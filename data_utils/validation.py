"""Checks that turn bad input into clear errors instead of silently wrong episodes.

Rules for image files (documented in docs/data.md):

* 8-bit RGB is used as is. Grayscale (``L``, ``LA``, ``1``), palette (``P``), ``CMYK`` and ``YCbCr`` images are
  converted to RGB (grey values are copied to the three channels).
* RGBA images: the alpha channel is dropped, the stored colour is kept (no compositing on a background colour).
* 16-bit or floating-point images (``I;16``, ``I``, ``F``) are rejected: their value range is ambiguous. This
  includes 16-bit-per-channel colour PNGs, which Pillow opens as ``RGB`` after silently dropping the low 8 bits
  (the PNG header's bit depth tells them apart).
* Images above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) are rejected, not decoded.

Rules for label files: an 8-bit single-channel PNG (palette ``P`` or grey ``L``) holding class indices 0..N and 255.
RGB colour-coded masks and 16-bit masks are rejected, as are values outside {0..N, 255} and a size that differs from
the image's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError, DatasetNotFoundError

IGNORE_INDEX = 255

# Modes that PIL can turn into 8-bit RGB without guessing a value range.
_CONVERTIBLE_IMAGE_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_LABEL_MODES = {"P", "L"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def prepare_command(dataset: str) -> str:
    """The exact command that downloads and prepares ``dataset``."""
    return f"python -m data_utils.prepare {dataset}"


def require_path(path: str | Path, dataset: str, what: str, root: str | Path) -> Path:
    """Return ``path`` if it exists, else raise ``DatasetNotFoundError`` naming the prepare command."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(
            f"{what} not found at {path}. Fetch and prepare the data with:\n"
            f"    {prepare_command(dataset)} --root {root}\n"
            "(or set DPCN_DATA to the data folder and drop --root)."
        )
    return path


def png_bit_depth(path: Path) -> int | None:
    """Bits per sample from a PNG's IHDR header (None for other formats); Pillow does not expose it for RGB."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return head[24]
    return None


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if png_bit_depth(path) == 16:
        raise DataError(f"{path} is a 16-bit PNG (Pillow would drop the low 8 bits of a colour one without a word); "
                        "only 8-bit images are supported. Convert it to 8 bits first.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # checked in Image.open, before decoding
            img = Image.open(path)
        img.load()  # forces decoding: truncated files fail here, not later inside a DataLoader worker
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{path} has more pixels than Pillow's decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS = "
                        f"{Image.MAX_IMAGE_PIXELS} ({err}). If the image is genuine, raise that limit.") from err
    except UnidentifiedImageError as err:
        raise DataError(f"{path} is not a readable image (corrupt or wrong format): {err}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path} is truncated or corrupt ({err}); re-download or re-extract it") from err
    return img


def read_rgb_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``uint8 HxWx3`` RGB, applying the conversion rules of this module."""
    img = _open(Path(path))
    if img.mode not in _CONVERTIBLE_IMAGE_MODES:
        raise DataError(
            f"{path} has pixel mode {img.mode!r} (16-bit or floating point); only 8-bit images are supported. "
            "Convert it to 8-bit RGB first."
        )
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy


def read_label(path: str | Path, num_classes: int) -> np.ndarray:
    """Read a class-index mask (8-bit palette or grey PNG) as ``uint8 HxW`` and check its values."""
    img = _open(Path(path))
    if img.mode not in _LABEL_MODES:
        raise DataError(
            f"{path} has pixel mode {img.mode!r}; masks must be 8-bit single-channel PNGs (palette or grey) holding "
            f"class indices 0..{num_classes} and {IGNORE_INDEX}. Colour-coded (RGB) and 16-bit masks are not accepted."
        )
    label = np.array(img, dtype=np.uint8)
    check_label_values(label, num_classes, source=str(path))
    return label


def check_label_values(label: np.ndarray, num_classes: int, source: str = "label") -> None:
    """Raise ``DataError`` when ``label`` holds a value outside {0..num_classes, 255}."""
    values = np.unique(label)
    bad = values[(values > num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DataError(
            f"{source} holds values {bad.tolist()} outside the class range 0..{num_classes} and {IGNORE_INDEX}"
        )


def check_pair(image: np.ndarray, label: np.ndarray, source: str = "image/label") -> None:
    """Raise ``DataError`` unless image is ``uint8 HxWx3`` and label ``uint8 HxW`` of the same size."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{source}: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if label.dtype != np.uint8 or label.ndim != 2:
        raise DataError(f"{source}: label must be uint8 HxW, got {label.dtype} {label.shape}")
    if image.shape[:2] != label.shape:
        raise DataError(
            f"{source}: image size {image.shape[1]}x{image.shape[0]} differs from label size "
            f"{label.shape[1]}x{label.shape[0]} (width x height)"
        )


def check_shots(shots: int) -> int:
    """K-shot needs K >= 1."""
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots (K) must be an integer >= 1, got {shots!r}")
    return int(shots)
