"""Strict nbval for the course: every kernel runs in the CI environment the stored outputs were refreshed in.

* The kernel nbval starts for each notebook inherits ``os.environ``; we set the CI environment
  (``dpcn_lite.course.ci_environment``: CPU only, fixed threads, fast mode, scratch Jupyter folders) just while that
  kernel starts, so library tests running in the same pytest process keep the developer's environment.
* With ``--nbval-lax`` (outputs not compared) the kernels keep the machine's environment instead: that is how the
  course is run in full mode on a GPU (``python -m pytest --nbval-lax notebooks/``, ``DPCN_FAST`` unset).
* ``stderr`` is not compared: warnings and progress bars write there and carry paths and rates. Exceptions are still
  failures (nbval reports ``error`` messages separately), and ``stdout`` and rich outputs are compared strictly.
* The student copies (``notebooks/student/``) hold stubs that raise on purpose: never collected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from dpcn_lite.course import ci_environment

collect_ignore = ["student"]

NOTEBOOK_DIR = Path(__file__).resolve().parent
SANITIZE_FILE = NOTEBOOK_DIR / "sanitize.cfg"

_scratch: str | None = None


def _is_nbval_cell(item: pytest.Item) -> bool:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:
        return False
    return isinstance(item, IPyNbCell)


def pytest_configure(config: pytest.Config) -> None:
    """Make ``pytest --nbval notebooks/`` strict from any working directory, with or without the project's addopts."""
    option = config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return
    option.nbval_current_env = True
    configured = getattr(option, "nbval_sanitize_with", None)
    if configured is None or not Path(configured).exists():
        option.nbval_sanitize_with = str(SANITIZE_FILE)


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Skip ``stderr`` when nbval compares a notebook's outputs (errors still fail the cell)."""
    try:
        from nbval.plugin import IPyNbFile
    except ImportError:
        return
    if isinstance(collector, IPyNbFile) and "stderr" not in collector.skip_compare:
        collector.skip_compare = collector.skip_compare + ("stderr",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Start each notebook's kernel inside the CI environment, then restore the process environment."""
    if (
        not _is_nbval_cell(item)
        or getattr(item.parent, "kernel", None) is not None
        or item.config.option.nbval_lax  # a lax run (e.g. full mode on a GPU) keeps this machine's environment
    ):
        yield
        return
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="dpcn_nbval_")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(ci_environment(_scratch, base=saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
