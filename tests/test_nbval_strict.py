"""Strict nbval really compares the course's stored outputs.

nbval only compares a cell whose stored ``execution_count`` is set; cells tagged ``nbval-skip`` (Colab setup,
downloads, real-data commands) are skipped before they run and keep no count by design (the hygiene test enforces
both). These tests show, on a real course notebook, that a changed stored output fails the run, and that a count-less
cell *without* the skip tag would be caught by the hygiene check instead of silently escaping comparison.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from dpcn_lite.course import ci_environment
from test_notebook_hygiene import check_execution_counts

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_welcome.ipynb"


def _run_nbval(path: Path) -> subprocess.CompletedProcess:
    """Strict nbval on one notebook, in the environment the stored outputs were made in (CPU, fast mode)."""
    env = ci_environment(path.parent / "scratch")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--nbval",
               "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "notebooks" / "sanitize.cfg"), str(path)]
    return subprocess.run(command, cwd=path.parent, capture_output=True, text=True, timeout=600,
                          env=env)


def _first_compared_text_output(nb) -> tuple[int, dict]:
    for index, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "nbval-skip" in tags or "nbval-ignore-output" in tags:
            continue
        for output in cell.outputs:
            if output.get("output_type") == "stream" and any(ch.isdigit() for ch in output.get("text", "")):
                return index, output
    raise AssertionError(f"{NOTEBOOK.name} has no compared text output with a number")


def test_every_count_less_cell_of_the_course_is_skipped_by_nbval() -> None:
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.execution_count is None:
                assert "nbval-skip" in cell.metadata.get("tags", []), f"{path.name} cell {index} escapes comparison"


def test_an_untagged_cell_without_a_count_fails_the_hygiene_check() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index, _ = _first_compared_text_output(nb)
    nb.cells[index].execution_count = None
    assert any(f"cell {index}" in problem for problem in check_execution_counts(nb))


def test_a_changed_stored_output_fails_strict_nbval(tmp_path: Path) -> None:
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    assert _run_nbval(copy).returncode == 0, "the untouched copy must pass first"

    nb = nbformat.read(copy, as_version=4)
    index, output = _first_compared_text_output(nb)
    text = output["text"]
    position = next(i for i, ch in enumerate(text) if ch.isdigit())
    output["text"] = text[:position] + str((int(text[position]) + 1) % 10) + text[position + 1:]
    nbformat.write(nb, copy)
    result = _run_nbval(copy)
    assert result.returncode != 0
    assert "Cell outputs differ" in result.stdout + result.stderr
