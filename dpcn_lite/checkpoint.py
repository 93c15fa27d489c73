"""Checkpoints: their one format, how they are written, and how a model comes back from one.

* **One format.** :func:`training_checkpoint` (what the loop writes every epoch) and :func:`head_only_checkpoint` (what
  ships inside the package) both assemble their dict in :func:`_record`; :func:`build_model_from_checkpoint` reads
  either back. Training and ``scripts/make_checkpoint.py`` use these functions; nothing else builds the dict.
* **Atomic writes.** :func:`atomic_save` writes through ``data_utils.files.atomic_write``: a temporary file in the same
  folder, flushed to disk, renamed over the target with ``os.replace`` (atomic on POSIX and Windows). A crash or a full
  disk during the write leaves the previous checkpoint untouched, never a half-written one.
* **Safe loads.** Every load uses ``torch.load(..., weights_only=True)``: only tensors and plain Python containers are
  accepted, so a checkpoint file cannot run code. That is why everything stored here (RNG states included) is kept as
  tensors, numbers, strings, lists and dicts.
* **Exact resume.** :func:`capture_rng_state` / :func:`restore_rng_state` save and restore the Python, NumPy and PyTorch
  (CPU and CUDA) random generators, so a resumed run draws the same episodes, dropout masks and augmentations as an
  uninterrupted one.
* **Exact resume.** :func:`resume_training` checks that the settings (and the number of processes) match and restores
  model, optimiser, scheduler, scaler and every process's RNG state.
* **Small published checkpoints.** :func:`load_pretrained` loads a checkpoint shipped inside the package (only the
  trainable head is stored when the backbone is the frozen pretrained Lite0), after checking its sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_utils.files import atomic_write
from dpcn_lite.base import FewShotSegmenter
from dpcn_lite.config import MODEL_NAMES, DPCNConfig, TrainConfig
from dpcn_lite.errors import CheckpointError, ResumeMismatchError, UserError
from dpcn_lite.model import build_model

PACKAGE_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
CHECKPOINT_FORMAT = "dpcn-lite-checkpoint-1"
RESUME_MAY_DIFFER = ("num_workers", "eval_batch_size")
"""The only TrainConfig fields a resumed run may change: they change speed, not a single number of the result. Every
other field (and every field added later) must match the checkpoint's, and so must the resolved model config."""


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically (a checkpoint is never left half-written)."""
    return atomic_write(path, lambda file: torch.save(obj, file), "wb")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code can run); ``CheckpointError`` for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train first (python -m dpcn_lite train ...) or fix the path.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/unsafe files
        # torch's own message suggests weights_only=False, i.e. running whatever code the file holds: never pass it on.
        raise CheckpointError(
            f"Could not load checkpoint {path} safely with weights_only=True ({type(error).__name__}): the file is "
            "corrupt or truncated, or was written by other code. Re-create it with dpcn-lite's train command."
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dpcn-lite checkpoint dict.")
    return checkpoint


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
    """Inverse of :func:`capture_rng_state`. The states must be CPU tensors (load checkpoints with
    ``map_location="cpu"``); CUDA generators are restored per device when CUDA is available."""
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
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([generator.cpu() for generator in state["cuda"]])


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
    """The JSON record beside a shipped checkpoint: file name, sha256, how it was trained, its metrics.

    Only registered names are accepted (never a path): ``--pretrained ../elsewhere`` is refused."""
    if name not in available_pretrained():
        raise CheckpointError(f"No shipped checkpoint named {name!r}; available: {available_pretrained()}. "
                              "To load your own run, use --checkpoint PATH or --run-dir FOLDER.")
    return json.loads((PACKAGE_CHECKPOINTS / f"{name}.json").read_text())


def verified_pretrained_path(name: str) -> Path:
    """Path of a shipped checkpoint after checking its sha256 against the recorded one."""
    info = pretrained_info(name)
    file, recorded = info.get("file"), info.get("sha256")
    if not isinstance(file, str) or not isinstance(recorded, str) or len(recorded) != 64:
        raise CheckpointError(f"The record of {name!r} ({name}.json) has no valid file name or sha256, so its "
                              "checkpoint cannot be verified and is refused; re-create it with scripts/make_checkpoint.py.")
    path = PACKAGE_CHECKPOINTS / file
    if path.parent != PACKAGE_CHECKPOINTS or not path.is_file():
        raise CheckpointError(
            f"The checkpoint file {file} of {name!r} is missing; re-create it with scripts/make_checkpoint.py."
        )
    actual = sha256_of(path)
    if actual != recorded:
        raise CheckpointError(
            f"sha256 mismatch for {path.name}: recorded {recorded}, found {actual}. The file is corrupt or was "
            "replaced (a Git LFS pointer?); re-create it with scripts/make_checkpoint.py."
        )
    return path


# --- the format -------------------------------------------------------------------------------------------------------


def _record(model_name: str, model_config: dict[str, Any], train_config: dict[str, Any],
            model_state: dict[str, torch.Tensor], progress: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The one layout of a checkpoint dict: what the model is, how it was trained, its weights, then ``extra``."""
    return {"format": CHECKPOINT_FORMAT, "model_name": model_name, "model_config": model_config,
            "train_config": train_config, "model_state": model_state, **extra, **progress}


def training_checkpoint(cfg: TrainConfig, model: FewShotSegmenter, optimizer: torch.optim.Optimizer,
                        scheduler: Any, scaler: torch.amp.GradScaler, epoch: int, iteration: int,
                        history: list[dict], rng_states: list[dict] | None = None) -> dict[str, Any]:
    """Everything an exact resume needs, after ``epoch`` epochs (``iteration`` optimiser steps).

    ``rng_states`` holds every process's RNG state (DDP; one per rank); ``rng_state`` is rank 0's."""
    rng_states = rng_states or [capture_rng_state()]
    return _record(cfg.model, model.config.to_dict(), cfg.to_dict(), model.state_dict(),
                   {"epoch": epoch, "iteration": iteration, "history": history},
                   optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                   scaler_state=scaler.state_dict(), rng_state=rng_states[0], rng_states=rng_states,
                   world_size=len(rng_states))


def best_checkpoint(cfg: TrainConfig, model: FewShotSegmenter, epoch: int, iteration: int,
                    selection_miou: float) -> dict[str, Any]:
    """The weights of the epoch that scored best on held-out base-class episodes (loads like any checkpoint)."""
    return _record(cfg.model, model.config.to_dict(), cfg.to_dict(), model.state_dict(),
                   {"epoch": epoch, "iteration": iteration, "history": []}, selection_mIoU=selection_miou)


def head_only_state(model: FewShotSegmenter) -> dict[str, torch.Tensor]:
    """The weights worth shipping: everything except a frozen, pretrained backbone (rebuilt from the package)."""
    if model.backbone.has_trainable_parameters or not model.config.pretrained:
        return model.state_dict()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def head_only_checkpoint(checkpoint: dict[str, Any], model: FewShotSegmenter) -> dict[str, Any]:
    """A training checkpoint reduced to what ships: no optimiser or RNG state, no frozen pretrained backbone."""
    return _record(checkpoint["model_name"], checkpoint["model_config"], checkpoint["train_config"],
                   {k: v.contiguous() for k, v in head_only_state(model).items()},
                   {k: checkpoint[k] for k in ("epoch", "iteration", "history")}, head_only=True)


def resume_differences(state: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{setting: (checkpoint's value, current value)}`` for every setting that differs and may change the result."""
    # A field the checkpoint does not record did not exist when it was written: it ran with that field's default.
    saved = {**TrainConfig().to_dict(), **dict(state.get("train_config", {}))}
    now = cfg.to_dict()
    differences = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
                   if k not in RESUME_MAY_DIFFER and saved.get(k) != now.get(k)}
    saved_model = {**dataclasses.asdict(DPCNConfig()), **dict(state.get("model_config", {}))}
    now_model = cfg.model_config().to_dict()
    differences.update({f"model.{k}": (saved_model.get(k), now_model.get(k)) for k in sorted(now_model)
                        if _plain(saved_model.get(k)) != _plain(now_model.get(k)) and k not in cfg.model_overrides})
    return differences


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal (a config read back from a checkpoint holds lists)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def resume_training(state: dict[str, Any], cfg: TrainConfig, model: FewShotSegmenter,
                    optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                    rank: int = 0, world_size: int = 1) -> tuple[int, int, list[dict]]:
    """Load a training checkpoint (read on the CPU) into the run's objects; returns ``(epoch, iteration, history)``.

    Refuses (``ResumeMismatchError``, listing each difference) a checkpoint trained with any other setting than the
    harmless ``RESUME_MAY_DIFFER``, or by another number of processes: a resumed run must be the run it continues.
    Each process restores its own RNG state; the optimiser moves its state to the parameters' device itself.
    """
    different = resume_differences(state, cfg)
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        different["processes (torchrun --nproc_per_node)"] = (saved_world, world_size)
    if different:
        listed = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, (old, new) in different.items())
        raise ResumeMismatchError(f"Cannot resume with other settings than the run used ({listed}). Resume with the "
                                  "run's settings (its config.json lists them), or start a new --run-dir.")
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    scaler.load_state_dict(state["scaler_state"])
    restore_rng_state(state.get("rng_states", [state["rng_state"]])[rank])
    return state["epoch"], state["iteration"], list(state["history"])


# --- models back from checkpoints ------------------------------------------------------------------------------------


def _check_shapes(model: FewShotSegmenter, stored: dict[str, Any], head_only: bool) -> None:
    """Every stored tensor must fit the model, and every weight must be stored (a head-only file may omit the
    frozen backbone): checked before anything is loaded, so the error names the first mismatches."""
    if not isinstance(stored, dict) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise CheckpointError("The checkpoint's model_state is not a dict of tensors.")
    expected = model.state_dict()
    unexpected = [k for k in stored if k not in expected]
    missing = [k for k in expected if k not in stored and not (head_only and k.startswith("backbone."))]
    wrong = [f"{k} {tuple(stored[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in stored and stored[k].shape != v.shape]
    if unexpected or missing or wrong:
        raise CheckpointError(f"The checkpoint does not fit the model its record describes: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}.")


def build_model_from_checkpoint(checkpoint: dict[str, Any]) -> FewShotSegmenter:
    """Rebuild the model a checkpoint was trained as and load its weights.

    The record is checked before anything is built (format, model name, bounded config values: a record asking for
    ``channels=200000`` is refused, not allocated), and the weights' names and shapes before they are loaded.
    Checkpoints that store only the trainable head (:func:`head_only_checkpoint`) get their frozen pretrained backbone
    from the installed package.
    """
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Not a dpcn-lite checkpoint (format={checkpoint.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT!r}).")
    if checkpoint.get("model_name") not in MODEL_NAMES:
        raise CheckpointError(f"The checkpoint's model {checkpoint.get('model_name')!r} is not one of {list(MODEL_NAMES)}.")
    try:
        config = DPCNConfig.from_dict(dict(checkpoint.get("model_config") or {}))
    except (UserError, TypeError, ValueError) as error:
        raise CheckpointError(f"The checkpoint's model config is refused: {error}") from None
    model = build_model(checkpoint["model_name"], config)
    head_only = checkpoint.get("head_only", False) is True
    _check_shapes(model, checkpoint.get("model_state"), head_only)
    model.load_state_dict(checkpoint["model_state"], strict=False)
    return model.eval()


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FewShotSegmenter, TrainConfig]:
    """A model and its training settings from a checkpoint file (loaded with ``weights_only=True``)."""
    checkpoint = load_checkpoint(path, map_location=device)
    try:
        train_config = TrainConfig.from_dict(dict(checkpoint.get("train_config") or {}))
    except (UserError, TypeError, ValueError) as error:
        raise CheckpointError(f"The training record of {path} is refused: {error}") from None
    model = build_model_from_checkpoint(checkpoint).to(device)
    return model, train_config


def load_pretrained(name: str = "cpu-synthetic-fold0", device: str | torch.device = "cpu") -> FewShotSegmenter:
    """A trained model shipped with the package, ready for ``eval()``: ``load_pretrained("cpu-synthetic-fold0")``.

    The sha256 is verified first; the file is loaded with ``weights_only=True``; the frozen pretrained backbone is
    rebuilt from the installed weights and only the stored (trainable) parameters are loaded on top.
    """
    model, _ = load_trained_model(verified_pretrained_path(name), device)
    return model.eval()
