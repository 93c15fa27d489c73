"""Checkpoints that survive crashes and load safely.

* **Atomic writes.** :func:`atomic_save` writes to a temporary file in the same folder, flushes it to disk and then
  renames it over the target with ``os.replace`` (atomic on POSIX and Windows). A crash or a full disk during the write
  leaves the previous checkpoint untouched, never a half-written one.
* **Safe loads.** Every load uses ``torch.load(..., weights_only=True)``: only tensors and plain Python containers are
  accepted, so a checkpoint file cannot run code. That is why everything stored here (RNG states included) is kept as
  tensors, numbers, strings, lists and dicts.
* **Exact resume.** :func:`capture_rng_state` / :func:`restore_rng_state` save and restore the Python, NumPy and PyTorch
  (CPU and CUDA) random generators, so a resumed run draws the same episodes, dropout masks and augmentations as an
  uninterrupted one.
* **Small published checkpoints.** :func:`load_pretrained` loads a checkpoint shipped inside the package (only the
  trainable head is stored when the backbone is the frozen pretrained Lite0), after checking its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

PACKAGE_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def _default_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give (mkstemp creates 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO], None], mode: str) -> Path:
    """Call ``write(file)`` on a temp file in ``path``'s folder, fsync, then ``os.replace`` it onto ``path``.

    A crash or an exception at any point leaves the old file untouched; only the partial temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, _default_file_mode())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically (a checkpoint is never left half-written)."""
    return _atomic_write(path, lambda file: torch.save(obj, file), "wb")


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file (JSON, YAML) atomically, like :func:`atomic_save`."""
    return _atomic_write(path, lambda file: file.write(text), "w")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code can run), with a clear error for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Train first (python -m dpcn_lite train ...) or fix the path.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/unsafe files
        raise RuntimeError(
            f"Could not load checkpoint {path} safely (weights_only=True): {error}. The file may be corrupt or "
            "written by other code; re-create it with dpcn_lite's training command."
        ) from error


# --- random generator state ------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and PyTorch generator states as tensors/lists/ints, loadable with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["internal"].tolist()), python["gauss"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- files with a recorded sha256 ------------------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def available_pretrained() -> list[str]:
    """Names of the checkpoints shipped with the package (each ``NAME.pt`` with ``NAME.json`` beside it)."""
    return sorted(p.stem for p in PACKAGE_CHECKPOINTS.glob("*.json"))


def pretrained_info(name: str) -> dict[str, Any]:
    """The JSON record beside a shipped checkpoint: file name, sha256, how it was trained, its metrics."""
    record = PACKAGE_CHECKPOINTS / f"{name}.json"
    if not record.is_file():
        raise ValueError(f"No shipped checkpoint named {name!r}; available: {available_pretrained()}.")
    return json.loads(record.read_text())


def verified_pretrained_path(name: str) -> Path:
    """Path of a shipped checkpoint after checking its sha256 against the recorded one."""
    info = pretrained_info(name)
    path = PACKAGE_CHECKPOINTS / info["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"The checkpoint file {info['file']} of {name!r} is missing; re-create it with scripts/make_checkpoint.py."
        )
    actual = sha256_of(path)
    if actual != info["sha256"]:
        raise RuntimeError(
            f"sha256 mismatch for {path.name}: recorded {info['sha256']}, found {actual}. The file is corrupt or was "
            "replaced (a Git LFS pointer?); re-create it with scripts/make_checkpoint.py."
        )
    return path


def load_pretrained(name: str = "cpu-synthetic-fold0", device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trained model shipped with the package, ready for ``eval()``: ``load_pretrained("cpu-synthetic-fold0")``.

    The sha256 is verified first; the file is loaded with ``weights_only=True``; the frozen pretrained backbone is
    rebuilt from the installed weights and only the stored (trainable) parameters are loaded on top.
    """
    from dpcn_lite.train import build_model_from_checkpoint  # late import: train imports this module

    checkpoint = load_checkpoint(verified_pretrained_path(name), map_location=device)
    model = build_model_from_checkpoint(checkpoint)
    return model.to(device).eval()
