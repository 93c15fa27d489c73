"""Every notebook in notebooks/ follows the course's rules, checked before strict nbval runs them.

Each ``check_*`` function returns a list of problems (empty = fine), so a failure names every broken rule at once.
The checkers are themselves tested on small synthetic notebooks at the bottom of this file: each rule must be able to
fail. The rules and their reasons are in docs/notebooks.md.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbval.plugin import get_sanitize_patterns

from dpcn_lite.course import CourseAddress, colab_badge_markdown, colab_cell_source, colab_url, course_address

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
sys.path.insert(0, str(ROOT / "scripts"))

from make_student_copies import SOLUTION_TAG, SolutionMarkupError, make_student_copy  # noqa: E402

ALLOWED_TAGS = {
    "nbval-ignore-output": "output differs per machine (versions, devices, timings, training logs); still executed",
    "nbval-skip": "never executed by tests or refresh (Colab setup, downloads, real-dataset cells)",
    "raises-exception": "the cell is meant to raise (a teaching example of a clear error)",
    "solution": "exercise solution between ### BEGIN/END SOLUTION markers; stubbed in the student copies",
    "colab": "Colab-only setup cell; must also carry nbval-skip",
}
FORBIDDEN_MIME = ("image/svg+xml", "application/pdf")
NBVAL_COMMENT_MARKERS = re.compile(r"^\s*#\s*(NBVAL_\w+|PYTEST_VALIDATE_IGNORE_OUTPUT)\s*$", re.MULTILINE)
MAX_OUTPUT_BYTES = 400_000  # one cell's outputs (a PNG figure at the course's sizes is 20-150 kB)
MAX_NOTEBOOK_BYTES = 3_000_000  # the whole file
TITLE_RE = re.compile(r"^# (\d\d) · \S.*$")
REQUIRED_SECTIONS = ("## You will learn", "## Prerequisites", "## Run time")
MIN_MOTIVATION_WORDS = 25
SANITIZE_FILE = NOTEBOOK_DIR / "sanitize.cfg"
EXPECTED_SANITIZE_RULES = 6


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _output_texts(nb):
    """Every text an output carries, with its cell index (streams, text/* data, error tracebacks)."""
    for index, cell in _code_cells(nb):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield index, output.text
            elif output.output_type == "error":
                yield index, "\n".join(output.get("traceback", []))
            else:
                for mime, value in output.get("data", {}).items():
                    if mime.startswith("text/") or mime == "application/json":
                        yield index, value if isinstance(value, str) else json.dumps(value)


# ----------------------------------------------------------------------------------------------------- the rules


def check_execution_counts(nb) -> list[str]:
    """Executed cells are numbered 1..N top to bottom with no gaps; skipped cells carry no count and no output."""
    problems, expected = [], 1
    for index, cell in _code_cells(nb):
        if "nbval-skip" in _tags(cell):
            if cell.execution_count is not None or cell.outputs:
                problems.append(f"cell {index}: tagged nbval-skip but has an execution count or outputs")
            continue
        if cell.execution_count != expected:
            problems.append(f"cell {index}: execution count {cell.execution_count}, expected {expected}")
        expected += 1
    return problems


def check_tags(nb) -> list[str]:
    problems = []
    for index, cell in enumerate(nb.cells):
        unknown = set(_tags(cell)) - set(ALLOWED_TAGS)
        if unknown:
            problems.append(f"cell {index}: unknown tags {sorted(unknown)} (allowed: {sorted(ALLOWED_TAGS)})")
        if cell.cell_type == "code" and NBVAL_COMMENT_MARKERS.search(cell.source):
            problems.append(f"cell {index}: use cell tags, not '# NBVAL_...' comments")
        if "colab" in _tags(cell) and "nbval-skip" not in _tags(cell):
            problems.append(f"cell {index}: a 'colab' cell must also be tagged 'nbval-skip'")
    return problems


def check_output_formats(nb) -> list[str]:
    problems = []
    for index, cell in _code_cells(nb):
        for output in cell.outputs:
            for mime in FORBIDDEN_MIME:
                if mime in output.get("data", {}):
                    problems.append(f"cell {index}: {mime} output (figures must be PNG)")
    return problems


def check_errors(nb) -> list[str]:
    """Error outputs only where a cell is meant to raise, and such cells really raise."""
    problems = []
    for index, cell in _code_cells(nb):
        raised = any(o.output_type == "error" for o in cell.outputs)
        expected = "raises-exception" in _tags(cell)
        if raised and not expected:
            problems.append(f"cell {index}: error output in a cell not tagged raises-exception")
        if expected and not raised and "nbval-skip" not in _tags(cell):
            problems.append(f"cell {index}: tagged raises-exception but stores no error")
    return problems


def check_badge(nb, filename: str, address: CourseAddress | None = None) -> list[str]:
    """A published course: the first cell holds the Open-in-Colab badge of this very file, and every Colab link is
    that file's. An unpublished one: no Colab link anywhere (no placeholder address)."""
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        return ["the first cell must be Markdown (title and badge)"]
    address = course_address() if address is None else address
    badge, own_url = colab_badge_markdown(filename, address=address), colab_url(filename, address=address)
    problems = []
    if badge is not None and badge not in nb.cells[0].source:
        problems.append(f"first cell lacks the badge {badge}: run python scripts/set_course_address.py")
    for index, cell in enumerate(nb.cells):
        for url in re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"']+", cell.source):
            if url != own_url:
                expected = own_url or "none: the course has no published address"
                problems.append(f"cell {index}: Colab link {url} does not match the setting ({expected})")
    return problems


def check_opening(nb, filename: str) -> list[str]:
    """Title '# NN · Title' matching the file number, a motivation paragraph, then the fixed sections."""
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        return ["the first cell must be Markdown (the opening)"]
    text = nb.cells[0].source
    lines = text.splitlines()
    problems = []
    title = TITLE_RE.match(lines[0]) if lines else None
    if not title:
        problems.append("first line must be the title '# NN · Title'")
    elif title.group(1) != filename[:2]:
        problems.append(f"title number {title.group(1)} does not match the file name {filename}")
    positions = []
    for section in REQUIRED_SECTIONS:
        found = [i for i, line in enumerate(lines) if line.strip().lower() == section.lower()]
        if not found:
            problems.append(f"missing section '{section}' in the first cell")
        positions.append(found[0] if found else len(lines))
    if positions != sorted(positions):
        problems.append(f"sections must come in the order {REQUIRED_SECTIONS}")
    before_sections = "\n".join(lines[1 : min(positions)])
    prose = re.sub(r"\[!\[.*?\]\(.*?\)\]\(.*?\)", "", before_sections)
    if len(prose.split()) < MIN_MOTIVATION_WORDS:
        problems.append(f"the motivation before '## You will learn' needs at least {MIN_MOTIVATION_WORDS} words")
    if positions[-1] < len(lines):
        run_time = "\n".join(lines[positions[-1] :])
        for word in ("CPU", "GPU"):
            if word not in run_time:
                problems.append(f"'## Run time' must give the {word} run time")
    return problems


def check_colab_cells(nb, address: CourseAddress | None = None) -> list[str]:
    """The Colab setup cell is the course's own (installs only this project, only on Colab, from the address setting)."""
    expected = colab_cell_source(address)
    problems = []
    for index, cell in _code_cells(nb):
        if "colab" not in _tags(cell):
            continue
        if "google.colab" not in cell.source:
            problems.append(f"cell {index}: the Colab cell must check for 'google.colab' before installing")
        if cell.source != expected:
            problems.append(f"cell {index}: the Colab cell differs from the course's (it installs only this project "
                            "from the address setting): run python scripts/set_course_address.py")
    return problems


def check_output_size(nb, path: Path | None = None) -> list[str]:
    problems = []
    for index, cell in _code_cells(nb):
        size = len(json.dumps(cell.outputs))
        if size > MAX_OUTPUT_BYTES:
            problems.append(f"cell {index}: outputs are {size} bytes (budget {MAX_OUTPUT_BYTES}); smaller figures?")
    if path is not None and path.stat().st_size > MAX_NOTEBOOK_BYTES:
        problems.append(f"file is {path.stat().st_size} bytes (budget {MAX_NOTEBOOK_BYTES})")
    return problems


def machine_path_patterns() -> list[str]:
    """Paths that only exist on the machine that ran the notebook: repository, home, temp dir, interpreter."""
    candidates = {str(ROOT), str(Path.home()), tempfile.gettempdir(), sys.prefix, "site-packages"}
    return sorted(c for c in candidates if len(c) > 4)


def check_machine_paths(nb, patterns: list[str] | None = None) -> list[str]:
    patterns = machine_path_patterns() if patterns is None else patterns
    problems = []
    for index, text in _output_texts(nb):
        for pattern in patterns:
            if pattern in text:
                problems.append(f"cell {index}: output contains a machine path ({pattern!r}); print relative names")
    return problems


def check_clean_metadata(nb) -> list[str]:
    """What the refresh command writes: tags only in cells, a fixed kernelspec, no widget state or timings."""
    problems = []
    extra = set(nb.metadata) - {"kernelspec", "language_info"}
    if extra:
        problems.append(f"notebook metadata has {sorted(extra)}: run scripts/refresh_notebooks.py")
    for index, cell in enumerate(nb.cells):
        extra = set(cell.get("metadata", {})) - {"tags"}
        if extra:
            problems.append(f"cell {index}: metadata {sorted(extra)}: run scripts/refresh_notebooks.py")
    return problems


def check_solutions(nb, filename: str = "notebook") -> list[str]:
    """Solution markers and the 'solution' tag go together (the student-copy script relies on both)."""
    try:
        make_student_copy(nb, filename)
    except SolutionMarkupError as error:
        return [str(error)]
    return []


def all_problems(nb, path: Path, address: CourseAddress | None = None) -> list[str]:
    return (
        check_execution_counts(nb)
        + check_tags(nb)
        + check_output_formats(nb)
        + check_errors(nb)
        + check_badge(nb, path.name, address)
        + check_opening(nb, path.name)
        + check_colab_cells(nb, address)
        + check_output_size(nb, path)
        + check_machine_paths(nb)
        + check_clean_metadata(nb)
        + check_solutions(nb, path.name)
    )


# ------------------------------------------------------------------------------------------ the course notebooks

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_course_has_notebooks() -> None:
    assert any(p.name.startswith("00_") for p in NOTEBOOKS), "notebook 00 is missing from notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_hygiene(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = all_problems(nb, path)
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_notebook_files_are_named_nn_title() -> None:
    bad = [p.name for p in NOTEBOOKS if not re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name)]
    assert not bad, f"notebooks must be named NN_snake_case.ipynb: {bad}"


def test_sanitize_file_parses_to_every_rule() -> None:
    text = SANITIZE_FILE.read_text()
    patterns = get_sanitize_patterns(text)
    regex_lines = [line for line in text.splitlines() if line.startswith("regex:")]
    assert len(regex_lines) == EXPECTED_SANITIZE_RULES
    assert len(patterns) == len(regex_lines), "a 'regex:' line is not directly followed by its 'replace:' line"
    for regex, _ in patterns:
        re.compile(regex)


def _sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns(SANITIZE_FILE.read_text()):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(
    "noisy, clean",
    [
        ("<Model object at 0x7f3a2c1b9d90>", "<Model object at 0xADDRESS>"),
        (
            "/tmp/ipykernel_4242/3170527395.py:3: UserWarning: careful",
            "<kernel-cell>:3: UserWarning: careful",
        ),
        ("saved to /tmp/tmpab12cd/run/model.pt", "saved to <tmp-path>"),
        ("Wall time: 1.23 s", "Wall time: <timing>"),
        ("12.3 ms ± 1.1 ms per loop (mean ± std. dev. of 7 runs, 100 loops each)", "<timeit>"),
        ("100%|####| 10/10 [00:01<00:00, 9.87it/s]", "100%|####| 10/10 [00:01<00:00, <rate>]"),
    ],
)
def test_sanitize_rules_remove_known_noise(noisy: str, clean: str) -> None:
    assert _sanitize(noisy) == clean


@pytest.mark.parametrize(
    "text", ["mIoU: 0.4312", "tensor([ 1.5410, -0.2930])", "step 20/20 loss 0.731", "class 12 (ring), 5 shots"]
)
def test_sanitize_rules_leave_results_alone(text: str) -> None:
    assert _sanitize(text) == text


# ------------------------------------------------------------------ the checkers catch what they claim to catch

GOOD_FILE = "42_synthetic_check.ipynb"
PUBLISHED = CourseAddress("some-lab/dpcn-lite")


def good_notebook() -> nbformat.NotebookNode:
    """A small notebook that follows every rule, as the refresh command would write it."""
    opening = (
        f"# 42 · A synthetic check\n\n{colab_badge_markdown(GOOD_FILE, address=PUBLISHED)}\n\n"
        + "This paragraph explains why the notebook matters, in enough words to motivate a learner who opens it "
        + "for the first time and wants to know what it will teach and why that is worth an afternoon.\n\n"
        + "## You will learn\n* one thing\n\n## Prerequisites\nNotebook 00.\n\n"
        + "## Run time\nCPU, fast mode: 1 minute. GPU: 1 minute."
    )
    colab = new_code_cell(colab_cell_source(PUBLISHED), metadata={"tags": ["colab", "nbval-skip"]})
    printing = new_code_cell("print(1 + 1)", execution_count=1)
    printing.outputs = [new_output("stream", name="stdout", text="2\n")]
    versions = new_code_cell("print(torch.__version__)", execution_count=2, metadata={"tags": ["nbval-ignore-output"]})
    versions.outputs = [new_output("stream", name="stdout", text="2.14.1\n")]
    raising = new_code_cell("check(-1)", execution_count=3, metadata={"tags": ["raises-exception"]})
    raising.outputs = [new_output("error", ename="ValueError", evalue="negative", traceback=["ValueError: negative"])]
    solution = new_code_cell(
        "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        execution_count=4,
        metadata={"tags": ["solution"]},
    )
    nb = new_notebook(
        cells=[new_markdown_cell(opening), colab, printing, versions, raising, solution],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    for cell in nb.cells:  # ids are random; irrelevant here
        cell.pop("id", None)
    nb.nbformat_minor = 4
    return nb


def _write(nb, tmp_path: Path, name: str = GOOD_FILE) -> Path:
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_the_good_synthetic_notebook_passes_every_check(tmp_path: Path) -> None:
    path = _write(good_notebook(), tmp_path)
    assert all_problems(nbformat.read(path, as_version=4), path, PUBLISHED) == []


def test_counts_out_of_order_or_with_gaps_fail() -> None:
    nb = good_notebook()
    nb.cells[3].execution_count = 7
    assert any("expected 2" in p for p in check_execution_counts(nb))
    nb = good_notebook()
    nb.cells[2].execution_count, nb.cells[3].execution_count = 2, 1
    assert len(check_execution_counts(nb)) == 2
    nb = good_notebook()
    nb.cells[1].execution_count = 5
    assert any("nbval-skip" in p for p in check_execution_counts(nb))


def test_unknown_tags_and_comment_markers_fail() -> None:
    nb = good_notebook()
    nb.cells[2].metadata["tags"] = ["hide-me"]
    assert any("unknown tags" in p for p in check_tags(nb))
    nb = good_notebook()
    nb.cells[2].source = "# NBVAL_IGNORE_OUTPUT\nprint(1 + 1)"
    assert any("not '# NBVAL_" in p for p in check_tags(nb))
    nb = good_notebook()
    nb.cells[1].metadata["tags"] = ["colab"]
    assert any("also be tagged 'nbval-skip'" in p for p in check_tags(nb))


def test_svg_and_pdf_outputs_fail() -> None:
    for mime in FORBIDDEN_MIME:
        nb = good_notebook()
        nb.cells[2].outputs.append(new_output("display_data", data={mime: "<svg/>", "text/plain": "<Figure>"}))
        assert any(mime in p for p in check_output_formats(nb))


def test_stray_errors_and_silent_raises_cells_fail() -> None:
    nb = good_notebook()
    nb.cells[2].outputs = [new_output("error", ename="NameError", evalue="x", traceback=["NameError"])]
    assert any("not tagged raises-exception" in p for p in check_errors(nb))
    nb = good_notebook()
    nb.cells[4].outputs = []
    assert any("stores no error" in p for p in check_errors(nb))


def test_badge_must_match_the_file_name_and_the_address_setting() -> None:
    nb = good_notebook()
    assert check_badge(nb, GOOD_FILE, PUBLISHED) == []
    assert check_badge(nb, "43_another_name.ipynb", PUBLISHED)
    assert any("does not match the setting" in p for p in check_badge(nb, GOOD_FILE, CourseAddress("other/name")))
    assert any("no published address" in p for p in check_badge(nb, GOOD_FILE, CourseAddress(None)))
    nb.cells[0].source = nb.cells[0].source.replace(colab_badge_markdown(GOOD_FILE, address=PUBLISHED), "")
    assert any("lacks the badge" in p for p in check_badge(nb, GOOD_FILE, PUBLISHED))
    assert check_badge(nb, GOOD_FILE, CourseAddress(None)) == []


def test_opening_sections_are_required() -> None:
    assert any("title number" in p for p in check_opening(good_notebook(), "41_other.ipynb"))
    for section in REQUIRED_SECTIONS:
        nb = good_notebook()
        nb.cells[0].source = nb.cells[0].source.replace(section + "\n", "")
        assert any(section in p for p in check_opening(nb, GOOD_FILE)), section
    nb = good_notebook()
    nb.cells[0].source = nb.cells[0].source.replace("GPU: 1 minute.", "")
    assert any("GPU" in p for p in check_opening(nb, GOOD_FILE))
    nb = good_notebook()
    nb.cells[0].source = re.sub(r"This paragraph.*?afternoon\.", "Short.", nb.cells[0].source)
    assert any("motivation" in p for p in check_opening(nb, GOOD_FILE))
    nb = good_notebook()
    nb.cells[0].source = nb.cells[0].source.replace("# 42 · A synthetic check", "# A synthetic check")
    assert any("title" in p for p in check_opening(nb, GOOD_FILE))


def test_colab_cells_install_only_this_project() -> None:
    assert check_colab_cells(good_notebook(), PUBLISHED) == []
    nb = good_notebook()
    nb.cells[1].source += "\n    %pip install torch==2.0"
    assert any("only this project" in p for p in check_colab_cells(nb, PUBLISHED))
    nb = good_notebook()
    nb.cells[1].source = nb.cells[1].source.replace('if "google.colab" in sys.modules:', "if True:")
    assert any("google.colab" in p for p in check_colab_cells(nb, PUBLISHED))
    assert any("address setting" in p for p in check_colab_cells(good_notebook(), CourseAddress(None)))


def test_outputs_over_budget_fail(tmp_path: Path) -> None:
    nb = good_notebook()
    nb.cells[2].outputs = [new_output("display_data", data={"image/png": "A" * (MAX_OUTPUT_BYTES + 1)})]
    assert any("budget" in p for p in check_output_size(nb))


def test_machine_paths_in_outputs_fail() -> None:
    nb = good_notebook()
    nb.cells[2].outputs = [new_output("stream", name="stdout", text=f"loaded {ROOT / 'runs' / 'model.pt'}\n")]
    assert any("machine path" in p for p in check_machine_paths(nb))
    assert check_machine_paths(good_notebook()) == []


def test_unclean_metadata_fails() -> None:
    nb = good_notebook()
    nb.metadata["widgets"] = {"state": {}}
    nb.cells[2].metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    assert len(check_clean_metadata(nb)) == 2


def test_solution_tag_and_markers_must_go_together() -> None:
    nb = good_notebook()
    nb.cells[5].metadata["tags"] = []
    assert any("no 'solution' tag" in p for p in check_solutions(nb))
    nb = good_notebook()
    nb.cells[2].metadata["tags"] = [SOLUTION_TAG]
    assert any("no '### BEGIN SOLUTION'" in p for p in check_solutions(nb))
    nb = good_notebook()
    nb.cells[5].source = nb.cells[5].source.replace("    ### END SOLUTION", "")
    assert any("never closed" in p for p in check_solutions(nb))


# ------------------------------------------------------------------------ the CI environment and the refresh command


def test_ci_environment_pins_what_changes_outputs(tmp_path: Path) -> None:
    from dpcn_lite.course import ci_environment

    env = ci_environment(tmp_path, base={"MPLBACKEND": "Agg", "HOME": "/somewhere", "DPCN_FAST": "0"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "2" and env["PYTHONHASHSEED"] == "0"
    assert env["DPCN_FAST"] == "1" and "MPLBACKEND" not in env and env["HOME"] == "/somewhere"
    for name in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR"):
        assert Path(env[name]).is_dir() and Path(env[name]).is_relative_to(tmp_path), name


def test_pick_follows_the_fast_mode_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from dpcn_lite.course import pick

    monkeypatch.setenv("DPCN_FAST", "1")
    assert pick(fast=3, full=300) == 3
    monkeypatch.setenv("DPCN_FAST", "0")
    assert pick(fast=3, full=300) == 300


@pytest.mark.parametrize("gpu", [False, True])
def test_fast_mode_defaults_to_the_device_and_can_be_forced_both_ways(monkeypatch: pytest.MonkeyPatch,
                                                                      gpu: bool) -> None:
    import torch

    from dpcn_lite.utils import fast_mode

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.delenv("DPCN_FAST", raising=False)
    assert fast_mode() is (not gpu)  # a laptop gets fast mode, a GPU full mode
    for value, expected in (("1", True), ("on", True), ("0", False), ("off", False), ("", not gpu)):
        monkeypatch.setenv("DPCN_FAST", value)
        assert fast_mode() is expected, value
    monkeypatch.setenv("DPCN_FAST", "maybe")
    with pytest.raises(ValueError, match="DPCN_FAST=0"):
        fast_mode()


def test_refresh_executes_in_the_ci_environment_and_writes_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One small real run of scripts/refresh_notebooks.py (a kernel start, about 2 s)."""
    import refresh_notebooks

    monkeypatch.setenv("MPLBACKEND", "Agg")  # must not reach the kernel: it would drop inline figures

    cells = [
        new_code_cell("import os, sys", metadata={"tags": ["colab", "nbval-skip"]}, execution_count=9),
        new_code_cell("import os\nfor k in ('DPCN_FAST', 'CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS'):\n"
                      "    print(k, repr(os.environ.get(k)))", execution_count=5, metadata={"collapsed": True}),
        new_code_cell("print('inline' in os.environ.get('MPLBACKEND', 'inline'))", execution_count=2),
    ]  # fmt: skip
    cells[1].outputs = [new_output("stream", name="stdout", text="stale\n")]
    path = tmp_path / "42_refresh.ipynb"
    nbformat.write(new_notebook(cells=cells, metadata={"widgets": {"state": {}}, "kernelspec": {"name": "other", "display_name": "Other"}}), path)

    assert refresh_notebooks.main([str(path), "--no-student-copies"]) == 0
    nb = nbformat.read(path, as_version=4)
    skipped, env_cell, backend_cell = (c for c in nb.cells if c.cell_type == "code")
    assert skipped.execution_count is None and skipped.outputs == []
    assert [env_cell.execution_count, backend_cell.execution_count] == [1, 2]
    assert env_cell.outputs[0].text == "DPCN_FAST '1'\nCUDA_VISIBLE_DEVICES ''\nOMP_NUM_THREADS '2'\n"
    assert backend_cell.outputs[0].text == "True\n"
    assert check_clean_metadata(nb) == [] and nb.metadata.kernelspec.name == "python3"
    written = path.read_text()
    assert refresh_notebooks.main([str(path), "--no-student-copies"]) == 0
    assert path.read_text() == written, "a second refresh must change nothing"


# ------------------------------------------------------------------ the course address: one setting, one command

PLACEHOLDER = "your" + "-org/"  # split so that this file does not hold the string it looks for


def test_no_file_of_the_course_holds_a_placeholder_address() -> None:
    roots = [ROOT / name for name in ("README.md", "notebooks", "student_notebooks", "docs", "scripts", "dpcn_lite",
                                      "data_utils", "benchmarks", "tests", "pyproject.toml")]
    files = [p for r in roots for p in ([r] if r.is_file() else r.rglob("*"))
             if p.is_file() and p.suffix in {".md", ".ipynb", ".py", ".json", ".toml", ".cfg", ".txt"}]
    assert len(files) > 50
    holding = [str(p.relative_to(ROOT)) for p in files if PLACEHOLDER in p.read_text(encoding="utf-8", errors="ignore")]
    assert holding == []


def test_the_address_command_rewrites_badges_and_colab_cells_both_ways(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from set_course_address import rewrite_notebook

    nb = good_notebook()
    assert rewrite_notebook(nb, GOOD_FILE, CourseAddress(None))
    assert "colab.research.google.com/github" not in nb.cells[0].source
    assert check_badge(nb, GOOD_FILE, CourseAddress(None)) == check_colab_cells(nb, CourseAddress(None)) == []
    assert "files.upload()" in nb.cells[1].source and "python -m build" in nb.cells[1].source
    other = CourseAddress("other-lab/course", branch="v2")
    assert rewrite_notebook(nb, GOOD_FILE, other)
    assert check_badge(nb, GOOD_FILE, other) == check_colab_cells(nb, other) == []
    assert "github.com/other-lab/course.git@v2" in nb.cells[1].source
    assert not rewrite_notebook(nb, GOOD_FILE, other)  # idempotent
    assert rewrite_notebook(nb, GOOD_FILE, PUBLISHED)
    assert nb.cells[0].source == good_notebook().cells[0].source  # back to where it started, blank lines included
    with pytest.raises(ValueError, match="OWNER/NAME"):
        CourseAddress("not an address")
