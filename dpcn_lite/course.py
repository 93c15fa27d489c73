"""Helpers the course notebooks call: one setup cell, the Colab badge, and the environment CI runs notebooks in.

Everything a notebook needs before it teaches anything lives here, so that the opening of every notebook is the same
two lines (``from dpcn_lite import course`` and ``env = course.setup()``) and behaves the same on a laptop, in a lab,
on Colab and in CI.

The CI environment (:func:`ci_environment`) is the single definition used by both ``scripts/refresh_notebooks.py``
(which writes the stored outputs) and ``notebooks/conftest.py`` (which checks them with strict nbval). Outputs only
compare when both run with the same variables, so neither may define its own.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dpcn_lite.utils import FAST_ENV, default_device, fast_mode, seed_everything

if TYPE_CHECKING:  # torch is imported lazily: the test tooling imports this module without needing torch.
    import torch

# The GitHub repository the Open-in-Colab badges point at. Change it here (and refresh) when the course is published
# under a different owner; the hygiene test checks every notebook's badge against this value.
GITHUB_REPOSITORY = "your-org/dpcn-lite"
GITHUB_BRANCH = "main"
NOTEBOOK_FOLDER = "notebooks"
STUDENT_FOLDER = "student_notebooks"  # exercise copies written by scripts/make_student_copies.py

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

# Threads are fixed in CI: the thread count changes the low digits of float reductions, and stored outputs are compared
# as text. Two matches the CI machine and Colab's free tier.
CI_THREADS = 2

T = TypeVar("T")


def colab_url(notebook_file: str, folder: str = NOTEBOOK_FOLDER) -> str:
    """The Open-in-Colab address of a notebook of this course, e.g. ``colab_url("00_welcome.ipynb")``."""
    return (
        f"https://colab.research.google.com/github/{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/"
        f"{folder}/{Path(notebook_file).name}"
    )


def colab_badge_markdown(notebook_file: str, folder: str = NOTEBOOK_FOLDER) -> str:
    """The Markdown of the badge that opens ``notebook_file`` on Colab (paste it into the notebook's first cell)."""
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(notebook_file, folder)})"


def in_colab() -> bool:
    """True inside a Google Colab runtime (its kernel has the ``google.colab`` package loaded)."""
    return "google.colab" in sys.modules


def ci_environment(scratch_dir: str | os.PathLike[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment notebooks are executed in by CI and by the refresh command: CPU only, fixed threads, fast mode.

    ``scratch_dir`` receives the Jupyter, IPython and Matplotlib folders so nothing is written to the user's home.
    ``MPLBACKEND`` is removed on purpose: a non-inline backend would drop every figure from the notebook.
    """
    env = dict(os.environ if base is None else base)
    scratch = Path(scratch_dir)
    folders = {
        "IPYTHONDIR": scratch / "ipython",
        "JUPYTER_CONFIG_DIR": scratch / "jupyter_config",
        "JUPYTER_DATA_DIR": scratch / "jupyter_data",
        "JUPYTER_RUNTIME_DIR": scratch / "jupyter_runtime",
        "MPLCONFIGDIR": scratch / "matplotlib",
    }
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    env.update(
        {
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": str(CI_THREADS),
            "MKL_NUM_THREADS": str(CI_THREADS),
            "PYTHONHASHSEED": "0",
            FAST_ENV: "1",
            # Plain tqdm reads TQDM_* variables as defaults: no text bars on stderr. (Notebook bars are widgets whose
            # stored text is their first frame, so they compare fine either way.)
            "TQDM_DISABLE": "1",
        }
    )
    env.pop("MPLBACKEND", None)
    return env


def pick(fast: T, full: T) -> T:
    """Return ``fast`` in fast mode (laptops, CI) and ``full`` otherwise: ``steps = course.pick(fast=30, full=3000)``.

    Keeps a notebook's text identical in both modes; only the sizes change.
    """
    return fast if fast_mode() else full


@dataclass(frozen=True)
class CourseEnvironment:
    """What :func:`setup` decided: read ``env.device``, ``env.fast``, ``env.generator`` in later cells."""

    device: "torch.device"
    fast: bool
    seed: int
    generator: "torch.Generator"
    colab: bool

    def summary(self) -> str:
        """One stable line for the notebook's output (no versions or timings: those go in ignored cells)."""
        mode = "fast (laptop/CI sizes)" if self.fast else "full (paper-like sizes)"
        return f"device: {self.device.type} | mode: {mode} | seed: {self.seed}"


def setup(seed: int = 0, *, verbose: bool = True) -> CourseEnvironment:
    """The first code cell of every notebook: seed everything, pick the device, report the mode.

    Returns a :class:`CourseEnvironment`; its ``generator`` is seeded like everything else, for samplers that take an
    explicit generator (so re-running one cell gives the same episode).
    """
    generator = seed_everything(seed)
    env = CourseEnvironment(
        device=default_device(), fast=fast_mode(), seed=seed, generator=generator, colab=in_colab()
    )
    if verbose:
        print(env.summary())
    return env


def environment_report() -> dict[str, str]:
    """Versions, device and thread settings, for a cell tagged ``nbval-ignore-output`` (they differ per machine)."""
    import matplotlib
    import numpy
    import torch
    import torchvision

    import dpcn_lite

    report = {
        "python": platform.python_version(),
        "dpcn_lite": dpcn_lite.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }
    try:
        import timm

        report["timm"] = timm.__version__
    except ImportError:  # optional for the welcome notebook; the backbone notebooks need it
        report["timm"] = "not installed"
    device = default_device()
    report["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report["torch threads"] = str(torch.get_num_threads())
    report["fast mode"] = "on" if fast_mode() else "off"
    report["colab"] = "yes" if in_colab() else "no"
    return report
