"""Small helpers every part of the course shares: the fast-mode switch, seeding and device choice."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

FAST_ENV = "DPCN_FAST"


def fast_mode() -> bool:
    """True when the environment asks for the laptop/CI-sized run (``DPCN_FAST=1``).

    Notebooks read this one switch to shrink steps, episodes and image sizes; CI and the refresh command set it.
    """
    return os.environ.get(FAST_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and return a ``torch.Generator`` seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when visible, else the CPU (MPS is left out: several ops DPCN needs are slow or missing there)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
