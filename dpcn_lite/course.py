"""Helpers the course notebooks call: one setup cell, the Colab badge, and the environment CI runs notebooks in.

Everything a notebook needs before it teaches anything lives here, so that the opening of every notebook is the same
two lines (``from dpcn_lite import course`` and ``env = course.setup()``) and behaves the same on a laptop, in a lab,
on Colab and in CI.

The CI environment (:func:`ci_environment`) is the single definition used by both ``scripts/refresh_notebooks.py``
(which writes the stored outputs) and ``notebooks/conftest.py`` (which checks them with strict nbval). Outputs only
compare when both run with the same variables, so neither may define its own.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dpcn_lite.utils import FAST_ENV, default_device, fast_mode, seed_everything

if TYPE_CHECKING:  # torch is imported lazily: the test tooling imports this module without needing torch.
    import torch

# Where the course is published is one setting, kept in a small file that ships with the package. Until an address is
# set (``python scripts/set_course_address.py OWNER/NAME``), the notebooks carry no Colab badge and their Colab cell
# installs a wheel the student uploads. The command rewrites every badge and Colab cell from the setting; the hygiene
# test checks they agree with it.
ADDRESS_FILE = Path(__file__).resolve().parent / "data" / "course_address.json"
NOTEBOOK_FOLDER = "notebooks"
STUDENT_FOLDER = "student_notebooks"  # exercise copies written by scripts/make_student_copies.py

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

# Threads are fixed in CI: the thread count changes the low digits of float reductions, and stored outputs are compared
# as text. Two matches the CI machine and Colab's free tier.
CI_THREADS = 2

T = TypeVar("T")


@dataclass(frozen=True)
class CourseAddress:
    """Where the course is published: a GitHub ``owner/name`` and branch, or nowhere yet (``repository=None``)."""

    repository: str | None = None
    branch: str = "main"

    def __post_init__(self) -> None:
        if self.repository is not None and not _REPOSITORY_RE.match(self.repository):
            raise ValueError(f"course address {self.repository!r}: write it as OWNER/NAME, e.g. my-lab/dpcn-lite")
        if not self.branch or any(c.isspace() for c in self.branch):
            raise ValueError(f"course branch {self.branch!r}: give a branch name such as main")


def course_address(path: Path = ADDRESS_FILE) -> CourseAddress:
    """The published address of the course, read from ``dpcn_lite/data/course_address.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return CourseAddress(repository=data.get("repository"), branch=data.get("branch", "main"))


def colab_url(notebook_file: str, folder: str = NOTEBOOK_FOLDER, address: CourseAddress | None = None) -> str | None:
    """The Open-in-Colab address of a notebook of this course, or None while the course has no published address."""
    address = course_address() if address is None else address
    if address.repository is None:
        return None
    return (
        f"https://colab.research.google.com/github/{address.repository}/blob/{address.branch}/"
        f"{folder}/{Path(notebook_file).name}"
    )


def colab_badge_markdown(notebook_file: str, folder: str = NOTEBOOK_FOLDER,
                         address: CourseAddress | None = None) -> str | None:
    """The Markdown of the badge that opens ``notebook_file`` on Colab (None while the course is unpublished)."""
    url = colab_url(notebook_file, folder, address)
    return None if url is None else f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({url})"


_COLAB_FROM_GITHUB = """\
# Colab only: install this course into Colab's own environment (its torch and numpy are kept). Skipped elsewhere.
import sys

if "google.colab" in sys.modules:
    %pip install --quiet "dpcn-lite @ git+https://github.com/{repository}.git@{branch}"
    try:
        import dpcn_lite  # noqa: F401
    except ImportError:
        raise SystemExit("The install failed: read pip's message above, then Runtime > Restart session and run this "
                         "cell again.") from None
"""

_COLAB_FROM_WHEEL = """\
# Colab only: install this course into Colab's own environment (its torch and numpy are kept). Skipped elsewhere.
# The course has no public address yet: upload the wheel made by `python -m build` (README, "On Colab").
import sys

if "google.colab" in sys.modules:
    import glob

    wheels = sorted(glob.glob("dpcn_lite-*.whl"))
    if not wheels:
        from google.colab import files

        print("Choose the course wheel: dist/dpcn_lite-<version>-py3-none-any.whl, made by `python -m build`.")
        wheels = sorted(name for name in files.upload() if name.startswith("dpcn_lite-") and name.endswith(".whl"))
    if not wheels:
        raise SystemExit("No dpcn_lite-*.whl was uploaded. Build it with `python -m build` in the course folder, "
                         "then run this cell again and choose the file from dist/.")
    %pip install --quiet {wheels[-1]}
    try:
        import dpcn_lite  # noqa: F401
    except ImportError:
        raise SystemExit(f"Installing {wheels[-1]} failed: read pip's message above, then Runtime > Restart session "
                         "and run this cell again.") from None
"""


def colab_cell_source(address: CourseAddress | None = None) -> str:
    """The source of every notebook's Colab setup cell for ``address`` (default: the published one)."""
    address = course_address() if address is None else address
    if address.repository is None:
        return _COLAB_FROM_WHEEL.rstrip("\n")
    return _COLAB_FROM_GITHUB.format(repository=address.repository, branch=address.branch).rstrip("\n")


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
