"""Write the student copies of the course: every solution replaced by a stub that raises ``NotImplementedError``.

    python scripts/make_student_copies.py          # notebooks/NN_*.ipynb -> student_notebooks/NN_*.ipynb

How solutions are marked (the one convention; see docs/notebooks.md):

* In a code cell tagged ``solution``, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` are the
  solution. The copy keeps everything else (signature, docstring, checks) and puts, at the marker's indentation,
  ``raise NotImplementedError("Exercise: <hint>")``. The hint is the text after ``### BEGIN SOLUTION:``, if any.
* A Markdown cell tagged ``solution`` (a written answer) is replaced by a line inviting the student's answer.
* Outputs of those cells are cleared; every other cell keeps its outputs, so students see what to aim for.

The copies live in ``student_notebooks/`` at the top of the repository: outside the notebooks strict nbval runs (their
stubs raise on purpose), and at the same folder depth, so relative paths in a notebook work in its copy.
``scripts/refresh_notebooks.py`` calls this after every refresh; ``tests/test_student_copies.py`` checks they are current.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"

from dpcn_lite.course import NOTEBOOK_FOLDER, STUDENT_FOLDER, CourseAddress, colab_url  # noqa: E402

STUDENT_DIR = ROOT / STUDENT_FOLDER
SOLUTION_TAG = "solution"
BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:\s*:\s*(?P<hint>.*?))?\s*$")
END_RE = re.compile(r"^[ \t]*### END SOLUTION\s*$")
DEFAULT_HINT = "complete this cell (see the exercise text above)"
MARKDOWN_STUB = "*Your answer here.*"


class SolutionMarkupError(ValueError):
    """A solution is marked inconsistently (unbalanced markers, markers without the tag, or the tag without markers)."""


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def stub_solution_source(source: str, where: str = "cell") -> tuple[str, list[str]]:
    """Replace every marked block in a code cell's ``source``; return (stubbed source, the removed solution blocks)."""
    out: list[str] = []
    removed: list[str] = []
    block: list[str] | None = None
    for line in source.splitlines():
        begin = BEGIN_RE.match(line)
        if begin:
            if block is not None:
                raise SolutionMarkupError(f"{where}: '### BEGIN SOLUTION' inside another solution block")
            hint = (begin.group("hint") or DEFAULT_HINT).replace('"', "'")
            out.append(f'{begin.group("indent")}raise NotImplementedError("Exercise: {hint}")')
            block = []
        elif END_RE.match(line):
            if block is None:
                raise SolutionMarkupError(f"{where}: '### END SOLUTION' without a matching BEGIN")
            removed.append("\n".join(block))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise SolutionMarkupError(f"{where}: '### BEGIN SOLUTION' is never closed by '### END SOLUTION'")
    return "\n".join(out), removed


def has_solution_markers(source: str) -> bool:
    return any(BEGIN_RE.match(line) or END_RE.match(line) for line in source.splitlines())


def make_student_copy(nb: nbformat.NotebookNode, name: str = "notebook",
                      address: CourseAddress | None = None) -> nbformat.NotebookNode:
    """The student version of ``nb`` (which is not modified). ``name`` labels error messages and the badge, which
    points at the copy when the course has an ``address`` (default: the published one)."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        where = f"{name} cell {index}"
        tagged = SOLUTION_TAG in _tags(cell)
        if cell.cell_type == "code":
            marked = has_solution_markers(cell.source)
            if marked and not tagged:
                raise SolutionMarkupError(f"{where}: has solution markers but no '{SOLUTION_TAG}' tag")
            if tagged and not marked:
                raise SolutionMarkupError(f"{where}: tagged '{SOLUTION_TAG}' but has no '### BEGIN SOLUTION' block")
            if tagged:
                cell.source, _ = stub_solution_source(cell.source, where)
                cell.outputs = []
                cell.execution_count = None
        elif tagged:
            cell.source = MARKDOWN_STUB
        if tagged:
            remaining = [t for t in _tags(cell) if t != SOLUTION_TAG]
            if remaining:
                cell.metadata["tags"] = remaining
            else:
                cell.metadata.pop("tags", None)
        own_url = colab_url(name, NOTEBOOK_FOLDER, address)
        if cell.cell_type == "markdown" and index == 0 and own_url is not None:
            cell.source = cell.source.replace(own_url, colab_url(name, STUDENT_FOLDER, address))
    return student


def solution_blocks(nb: nbformat.NotebookNode) -> list[str]:
    """Every solution text of ``nb`` (code blocks between markers, tagged Markdown cells), for the no-leak test."""
    blocks: list[str] = []
    for cell in nb.cells:
        if SOLUTION_TAG not in _tags(cell):
            continue
        if cell.cell_type == "code":
            blocks.extend(stub_solution_source(cell.source)[1])
        else:
            blocks.append(cell.source)
    return [b for b in blocks if b.strip()]


def student_text(source_path: Path) -> str:
    """The exact file content of the student copy of ``source_path`` (nbformat's stable layout)."""
    nb = nbformat.read(source_path, as_version=4)
    text = nbformat.writes(make_student_copy(nb, source_path.name), version=4)
    return text if text.endswith("\n") else text + "\n"


def course_notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def write_student_copies(sources: list[Path] | None = None, out_dir: Path = STUDENT_DIR) -> list[Path]:
    """Write the copies of ``sources`` (default: all course notebooks, removing copies of deleted notebooks)."""
    all_notebooks = sources is None
    sources = course_notebooks() if sources is None else sources
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out_dir / source.name
        text = student_text(source)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    if all_notebooks:
        for stale in set(out_dir.glob("*.ipynb")) - set(written):
            stale.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    written = write_student_copies()
    for path in written:
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
