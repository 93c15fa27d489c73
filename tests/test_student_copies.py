"""Student copies (student_notebooks/) are current, hold no solution text, and stub exercises the documented way."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dpcn_lite.course import STUDENT_FOLDER, CourseAddress, colab_badge_markdown

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_student_copies import (  # noqa: E402
    MARKDOWN_STUB,
    STUDENT_DIR,
    SolutionMarkupError,
    course_notebooks,
    make_student_copy,
    solution_blocks,
    student_text,
    write_student_copies,
)

SOURCES = course_notebooks()


def test_every_course_notebook_has_a_copy_and_nothing_else_is_there() -> None:
    copies = sorted(p.name for p in STUDENT_DIR.glob("*.ipynb"))
    assert copies == [p.name for p in SOURCES], "run: python scripts/make_student_copies.py"


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_copy_is_current(source: Path) -> None:
    copy_path = STUDENT_DIR / source.name
    assert copy_path.is_file(), f"missing {copy_path.name}: run python scripts/make_student_copies.py"
    assert copy_path.read_text(encoding="utf-8") == student_text(source), (
        f"{STUDENT_FOLDER}/{source.name} is stale: run python scripts/make_student_copies.py"
    )


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_copy_holds_no_solution(source: Path) -> None:
    text = (STUDENT_DIR / source.name).read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    copy_nb = nbformat.read(STUDENT_DIR / source.name, as_version=4)
    copy_sources = "\n".join(cell.source for cell in copy_nb.cells)
    for block in solution_blocks(nbformat.read(source, as_version=4)):
        assert block not in copy_sources, f"solution text leaked into the student copy:\n{block}"


# ------------------------------------------------------------------------------ the stubbing on a synthetic notebook

NAME = "42_exercise.ipynb"
PUBLISHED = CourseAddress("some-lab/dpcn-lite")


def exercise_notebook() -> nbformat.NotebookNode:
    solved = new_code_cell(
        "def double(x):\n"
        '    """Twice x."""\n'
        "    ### BEGIN SOLUTION: multiply by two\n"
        "    y = x + x\n"
        "    return y\n"
        "    ### END SOLUTION\n"
        "\n"
        "def triple(x):\n"
        "    ### BEGIN SOLUTION\n"
        "    return 3 * x\n"
        "    ### END SOLUTION",
        execution_count=1,
        metadata={"tags": ["solution"]},
    )
    solved.outputs = [new_output("stream", name="stdout", text="defined\n")]
    check = new_code_cell("print(double(2))", execution_count=2)
    check.outputs = [new_output("stream", name="stdout", text="4\n")]
    answer = new_markdown_cell("The prior fails on rings because the hole averages in.", metadata={"tags": ["solution"]})
    return new_notebook(cells=[new_markdown_cell(f"# 42 · Exercise\n\n{colab_badge_markdown(NAME, address=PUBLISHED)}"), solved, check, answer])


def test_stub_replaces_only_the_marked_lines_and_runs_as_an_exercise() -> None:
    original = exercise_notebook()
    student = make_student_copy(original, NAME, PUBLISHED)
    stub = student.cells[1]
    assert "y = x + x" not in stub.source and "3 * x" not in stub.source
    assert '"""Twice x."""' in stub.source and "def triple(x):" in stub.source
    assert stub.outputs == [] and stub.execution_count is None and "solution" not in stub.metadata.get("tags", [])
    namespace: dict = {}
    exec(stub.source, namespace)
    with pytest.raises(NotImplementedError, match="Exercise: multiply by two"):
        namespace["double"](2)
    with pytest.raises(NotImplementedError, match="Exercise: complete this cell"):
        namespace["triple"](2)
    # other cells keep their outputs; written answers are replaced; the badge points at the student copy
    assert student.cells[2].outputs == original.cells[2].outputs
    assert student.cells[3].source == MARKDOWN_STUB
    assert f"/{STUDENT_FOLDER}/{NAME}" in student.cells[0].source
    # the original is untouched
    assert "y = x + x" in original.cells[1].source


def test_solution_blocks_lists_every_solution() -> None:
    blocks = solution_blocks(exercise_notebook())
    assert blocks == ["    y = x + x\n    return y", "    return 3 * x", "The prior fails on rings because the hole averages in."]


@pytest.mark.parametrize(
    "source, tags, message",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1", ["solution"], "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION", ["solution"], "without a matching BEGIN"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", [], "no 'solution' tag"),
        ("def f():\n    return 1", ["solution"], "has no '### BEGIN SOLUTION'"),
    ],
)
def test_inconsistent_markup_is_an_error(source: str, tags: list[str], message: str) -> None:
    nb = new_notebook(cells=[new_code_cell(source, metadata={"tags": tags})])
    with pytest.raises(SolutionMarkupError, match=message):
        make_student_copy(nb, NAME)


def test_write_student_copies_writes_and_prunes(tmp_path: Path) -> None:
    source = tmp_path / NAME
    nbformat.write(exercise_notebook(), source)
    out = tmp_path / "student"
    out.mkdir()
    (out / "99_deleted.ipynb").write_text("{}")
    written = write_student_copies([source], out_dir=out)
    assert written == [out / NAME]
    copy_nb = nbformat.read(out / NAME, as_version=4)
    assert "NotImplementedError" in copy_nb.cells[1].source
    assert (out / "99_deleted.ipynb").exists(), "an explicit list must not prune other copies"
