"""Small helpers every part of the course shares: the fast-mode switch, seeding and device choice."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

FAST_ENV = "DPCN_FAST"


def fast_mode() -> bool:
    """True for laptop/CI-sized runs: by default on a CPU, and off on a GPU. ``DPCN_FAST=1`` or ``DPCN_FAST=0``
    forces either way (CI and the refresh command set 1).

    Notebooks read this one switch to shrink steps, episodes and image sizes. The default follows the device so that
    a student who opens the course on a laptop never starts a GPU-sized run by accident.
    """
    value = os.environ.get(FAST_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    if value:
        raise ValueError(f"{FAST_ENV}={value!r}: use {FAST_ENV}=1 (fast, laptop sizes) or {FAST_ENV}=0 (full sizes), "
                         "or leave it unset (fast on a CPU, full on a GPU)")
    return not torch.cuda.is_available()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and return a ``torch.Generator`` seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when visible, else the CPU (MPS is left out: several ops DPCN needs are slow or missing there)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
