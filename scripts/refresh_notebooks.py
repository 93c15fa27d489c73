"""Re-execute course notebooks in the CI environment and write them back cleanly: the ONE way to update stored outputs.

    python scripts/refresh_notebooks.py                          # every notebooks/NN_*.ipynb
    python scripts/refresh_notebooks.py notebooks/03_prototypes.ipynb

Why one command: strict nbval compares stored outputs as text, so they must come from exactly the environment CI
checks them in (CPU only, fixed threads, fast mode; ``dpcn_lite.course.ci_environment``), from a fresh kernel,
top to bottom, with execution counts 1..N. Outputs saved from a GPU, another thread count or an interactive session
with cells run out of order will not compare. The same kernel nbval uses (this interpreter's ipykernel) runs them.

Cells tagged ``nbval-skip`` (Colab setup, downloads) are not executed and keep no outputs. Cell metadata other than
tags, timing records and widget state are dropped, and notebook metadata is reduced to a fixed kernelspec, so a
refresh on another machine changes nothing but outputs that really changed. Finally the student copies are rewritten.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbconvert.preprocessors import ExecutePreprocessor
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dpcn_lite.course import ci_environment  # noqa: E402

SKIP_TAG = "nbval-skip"
CELL_TIMEOUT_S = 600

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def course_notebooks() -> list[Path]:
    """The course notebooks: ``notebooks/NN_*.ipynb`` (student copies and checkpoints live in sub-folders)."""
    return sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def strip_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, counts or volatile metadata: what is executed, and the shape that is written back."""
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


class CourseExecutePreprocessor(ExecutePreprocessor):
    """nbconvert's executor, except that ``nbval-skip`` cells are left unexecuted (as nbval leaves them)."""

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 (nbconvert's signature)
        if SKIP_TAG in cell.get("metadata", {}).get("tags", []):
            return cell, resources
        return super().preprocess_cell(cell, resources, index)


def execute(nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh kernel of this interpreter, in ``workdir`` (the notebook's folder)."""
    executor = CourseExecutePreprocessor(
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        store_widget_state=False,
        allow_errors=False,
        # Quiet the kernel's own start-up log on the terminal; cell outputs are unaffected.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
    executed, _ = executor.preprocess(nb, {"metadata": {"path": str(workdir)}}, km=km)
    return executed


def finalise(executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what the executor adds beside outputs (kernel metadata, per-cell execution records)."""
    clean = strip_notebook(executed)
    for cell, ran in zip(clean.cells, executed.cells):
        if cell.cell_type == "code":
            cell.outputs = ran.outputs
            cell.execution_count = ran.execution_count
    return clean


def write_if_changed(nb: nbformat.NotebookNode, path: Path) -> bool:
    """Validate and write with nbformat's stable layout (sorted keys, one-space indent); skip identical files."""
    nbformat.validate(nb)
    text = nbformat.writes(nb, version=4)
    if not text.endswith("\n"):
        text += "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def refresh(path: Path) -> tuple[float, bool]:
    """Refresh one notebook in place; return (seconds, whether the file changed)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    executed = execute(strip_notebook(nb), path.parent)
    seconds = time.perf_counter() - start
    return seconds, write_if_changed(finalise(executed), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to refresh (default: all course notebooks)")
    parser.add_argument("--no-student-copies", action="store_true", help="do not rewrite the student copies")
    args = parser.parse_args(argv)

    paths = [p.resolve() for p in args.notebooks] or course_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    scratch = tempfile.mkdtemp(prefix="dpcn_refresh_")
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(ci_environment(scratch, base=saved_env))
    total = 0.0
    try:
        for path in paths:
            seconds, changed = refresh(path)
            total += seconds
            state = "updated" if changed else "unchanged"
            print(f"{path.name:<45} {seconds:7.1f} s  {state}", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'total':<45} {total:7.1f} s")

    if not args.no_student_copies:
        from make_student_copies import STUDENT_DIR, write_student_copies

        # the copies of the refreshed notebooks only (all of them, removing stale ones, when none was named)
        written = write_student_copies(paths if args.notebooks else None)
        print(f"student copies: {len(written)} written to {STUDENT_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
