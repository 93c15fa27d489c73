"""The course works from pip: the built wheel, installed in a fresh virtual environment, runs notebook 09.

What a learner gets from ``pip install dpcn-lite`` (or from the wheel uploaded to Colab) is the wheel, not the clone:
anything the notebooks read from the repository instead of the package fails there. So this test

1. builds the wheel from a copy of the project's sources (``python -m build --wheel --no-isolation``: offline, with
   the setuptools of this environment; isolation would download it);
2. creates a fresh venv without this environment's site-packages, and reuses this environment's heavy packages
   (torch, Jupyter, ...) through a ``.pth`` file that lists this environment's site-packages folder. The lines of a
   ``.pth`` are appended to ``sys.path``, but ``.pth`` files inside that folder are not processed, so the editable
   install of dpcn_lite (an import hook started by a ``.pth``) does not leak in: ``import dpcn_lite`` fails there
   until the wheel is installed, which is checked;
3. installs the wheel with ``pip install --no-deps --no-index``;
4. executes ``notebooks/09_ablations_and_benchmarks.ipynb``, copied alone into an empty folder, with the new venv's
   Python in the CI environment (``dpcn_lite.course.ci_environment``; cells tagged ``nbval-skip`` are left out as
   nbval leaves them), and checks that it ran without error from the wheel's files, and that its outputs are the
   ones stored in the repository (the clone's run), so its tables hold the same numbers, with no NaN of its own.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest

from dpcn_lite.course import ci_environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "09_ablations_and_benchmarks.ipynb"
SANITIZE = ROOT / "notebooks" / "sanitize.cfg"
MARKER = "WHEEL-RUN "
SKIP_TAG, IGNORE_OUTPUT_TAG = "nbval-skip", "nbval-ignore-output"
TIMEOUT_S = 900

# The wheel run's own report, appended to the copy of notebook 09 (never to the repository's notebook).
REPORT_CELL = f"""
import json as _json, sys as _sys
import data_utils as _data_utils, dpcn_lite as _dpcn_lite
print({MARKER!r} + _json.dumps({{"dpcn_lite": _dpcn_lite.__file__, "data_utils": _data_utils.__file__,
                                 "executable": _sys.executable, "prefix": _sys.prefix}}))
"""


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _copy_sources(dest: Path) -> None:
    """What the wheel is built from: pyproject, README and the package folders named in ``packages.find``."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)
    for license_file in ROOT.glob("LICENSE*"):
        shutil.copy2(license_file, dest / license_file.name)
    patterns = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {pattern.split(".")[0].rstrip("*") for pattern in patterns}
    assert tops, "pyproject's [tool.setuptools.packages.find] include names no package"
    for top in sorted(tops):
        shutil.copytree(ROOT / top, dest / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))


def _this_environments_site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(str(Path(paths[key]).resolve()) for key in ("purelib", "platlib")))


def _run(command: list[str], *, cwd: Path, env: dict[str, str],
         timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _isolated_env(venv_dir: Path) -> dict[str, str]:
    """This process's environment with the new venv first on PATH and nothing that points Python elsewhere."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "JUPYTER_PATH")}
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = str(venv_dir / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _sanitize_rules() -> list[tuple[re.Pattern[str], str]]:
    """notebooks/sanitize.cfg, the rules strict nbval applies before it compares outputs."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(SANITIZE.read_text(encoding="utf-8"))
    return [(re.compile(parser[section]["regex"]), parser[section]["replace"]) for section in parser.sections()]


def _texts(cell: nbformat.NotebookNode, rules: list[tuple[re.Pattern[str], str]]) -> list[str]:
    """A cell's compared outputs as nbval compares them: all of stdout (streams merged) and each text/plain."""
    stdout = "".join(output.text for output in cell.get("outputs", [])
                     if output.output_type == "stream" and output.name == "stdout")
    texts = ([stdout] if stdout else []) + [
        output.data["text/plain"] for output in cell.get("outputs", [])
        if output.output_type in ("execute_result", "display_data") and "text/plain" in output.data]
    for pattern, replacement in rules:
        texts = [pattern.sub(replacement, text) for text in texts]
    return texts


def _nan_lines(texts: list[str]) -> list[str]:
    return [line for text in texts for line in text.splitlines() if re.search(r"(?<![A-Za-z])nan(?![A-Za-z])", line)]


@pytest.fixture(scope="module")
def wheel_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build, install in a fresh venv, execute notebook 09 there; returns what the checks below need."""
    started = time.perf_counter()
    tmp = tmp_path_factory.mktemp("wheel_install")

    # 1. The wheel, from a copy of the sources (no build/ or egg-info left in the repository).
    sources, dist = tmp / "src", tmp / "dist"
    _copy_sources(sources)
    built = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(sources)],
                 cwd=tmp, env=dict(os.environ))
    assert built.returncode == 0, f"python -m build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    wheels = sorted(dist.glob("dpcn_lite-*.whl"))
    assert len(wheels) == 1, f"expected one dpcn_lite wheel in {dist}, found {[w.name for w in wheels]}"

    # 2. A fresh venv that sees this environment's packages only through one .pth (no editable dpcn_lite).
    venv_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=os.name != "nt").create(venv_dir)
    python = venv_dir / "bin" / "python"
    probe = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp,
                 env=_isolated_env(venv_dir))
    assert probe.returncode == 0, probe.stderr
    venv_site = Path(probe.stdout.strip())
    (venv_site / "ci_environment_packages.pth").write_text("\n".join(_this_environments_site_packages()) + "\n")
    env = _isolated_env(venv_dir)
    before = _run([str(python), "-c", "import dpcn_lite"], cwd=tmp, env=env)
    shared = _run([str(python), "-c", "import torch, nbconvert, ipykernel, build; print(torch.__version__)"],
                  cwd=tmp, env=env)

    # 3. The wheel, with pip (this environment's, reached through the .pth) into the new venv.
    # --ignore-installed: pip also sees this environment's (editable) dpcn-lite through the .pth; never touch it.
    installed = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                      "--no-cache-dir", "--disable-pip-version-check", str(wheels[0])], cwd=tmp, env=env)
    assert installed.returncode == 0, f"pip install of the wheel failed:\n{installed.stdout}\n{installed.stderr}"

    # 4. Notebook 09 alone in an empty folder, nbval-skip cells left out, plus a cell that reports where it ran from.
    run_dir, scratch = tmp / "run", tmp / "scratch"
    run_dir.mkdir()
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = [cell for cell in nb.cells if SKIP_TAG not in cell.get("metadata", {}).get("tags", [])]
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL.strip()))
    nbformat.write(nb, run_dir / NOTEBOOK.name)
    run_env = ci_environment(scratch, base=env)
    kernel_dir = Path(run_env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"  # the kernel is the new venv's Python
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (wheel venv)", "language": "python"}))
    notebook_started = time.perf_counter()
    executed = _run([str(python), "-m", "nbconvert", "--to", "notebook", "--execute", "--output", "executed.ipynb",
                     "--ExecutePreprocessor.kernel_name=python3", f"--ExecutePreprocessor.timeout={TIMEOUT_S}",
                     NOTEBOOK.name], cwd=run_dir, env=run_env, timeout=2 * TIMEOUT_S)
    finished = time.perf_counter()
    print(f"\nwheel install test: {finished - started:.0f} s in all, notebook 09 {finished - notebook_started:.0f} s")
    return {"wheel": wheels[0], "venv": venv_dir, "venv_site": venv_site, "before": before, "shared": shared,
            "executed": executed, "result": run_dir / "executed.ipynb", "stored": stored}


def test_the_wheel_holds_every_package_data_file(wheel_run: dict) -> None:
    """Each file of the source tree that a package-data pattern names is inside the wheel."""
    with zipfile.ZipFile(wheel_run["wheel"]) as wheel:
        names = set(wheel.namelist())
    wanted = {f"{package}/{path.relative_to(ROOT / package).as_posix()}"
              for package, patterns in _pyproject()["tool"]["setuptools"]["package-data"].items()
              for pattern in patterns for path in (ROOT / package).glob(pattern)}
    assert wanted, "package-data names no file"
    assert not wanted - names, f"not in the wheel: {sorted(wanted - names)}"
    assert "dpcn_lite/__init__.py" in names and "data_utils/__init__.py" in names


def test_the_new_venv_sees_the_shared_packages_but_not_the_editable_install(wheel_run: dict) -> None:
    before = wheel_run["before"]
    assert before.returncode != 0 and "No module named 'dpcn_lite'" in before.stderr, (
        "dpcn_lite was importable in the new venv before the wheel was installed: the repository or the editable "
        f"install leaks in.\n{before.stdout}\n{before.stderr}")
    assert wheel_run["shared"].returncode == 0, wheel_run["shared"].stderr


def test_notebook_09_runs_from_the_wheel(wheel_run: dict) -> None:
    executed = wheel_run["executed"]
    assert executed.returncode == 0, f"notebook 09 failed from the wheel:\n{executed.stderr[-6000:]}"
    nb = nbformat.read(wheel_run["result"], as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"error outputs: {[(e.ename, e.evalue) for e in errors]}"

    # It ran from the wheel's files in the new venv, not from the repository.
    reports = [line[len(MARKER):] for line in code[-1].outputs[0].text.splitlines() if line.startswith(MARKER)]
    where = json.loads(reports[0])
    venv_dir = wheel_run["venv"].resolve()
    for module in ("dpcn_lite", "data_utils"):
        path = Path(where[module]).resolve()
        assert path.is_relative_to(wheel_run["venv_site"].resolve()), f"{module} came from {path}, not the wheel"
        assert not path.is_relative_to(ROOT), f"{module} came from the repository: {path}"
    assert Path(where["prefix"]).resolve() == venv_dir, where

    # Its outputs are the clone's (the stored ones, compared as strict nbval compares them).
    rules = _sanitize_rules()
    stored = [cell for cell in wheel_run["stored"].cells
              if cell.cell_type == "code" and SKIP_TAG not in cell.get("metadata", {}).get("tags", [])]
    assert len(stored) == len(code) - 1
    wheel_texts, stored_texts = [], []
    for index, (ran, kept) in enumerate(zip(code, stored)):
        if IGNORE_OUTPUT_TAG in kept.get("metadata", {}).get("tags", []):
            continue
        got, expected = _texts(ran, rules), _texts(kept, rules)
        wheel_texts += got
        stored_texts += expected
        assert got == expected, (f"code cell {index + 1} of notebook 09 prints something else from the wheel than "
                                 f"from the clone.\ncell starts: {kept.source[:200]!r}\nfrom the wheel: {got!r}\n"
                                 f"stored: {expected!r}")

    # The tables hold numbers: evaluations were read, and no NaN appears that the clone's run does not have.
    text = "\n".join(wheel_texts)
    recorded = re.search(r"(\d+) recorded evaluations", text)
    assert recorded and int(recorded.group(1)) > 0, "notebook 09 read no recorded evaluation from the wheel"
    assert "is missing" not in text, "a benchmark result was not found from the wheel"
    assert len(re.findall(r"\d+\.\d", text)) > 50, "notebook 09's tables hold few numbers"
    assert _nan_lines(wheel_texts) == _nan_lines(stored_texts)
