"""Fault injection: a real training process is SIGKILLed at exact points, then ``--resume`` must give bit for bit the
run an uninterrupted process gives. The loop's test-only hook (``DPCN_TEST_HOLD``) stops the process there first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpcn_lite.loop import HOLD_ENV

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

BUDGETS = {
    # tiny preset, trained through the backbone
    "tiny": ["--preset", "tiny", "--epochs", "3", "--episodes-per-epoch", "4", "--episodes", "6"],
    # cpu preset: frozen pretrained Lite0 and its feature cache, a reduced budget of a few short epochs
    "cpu": ["--preset", "cpu", "--epochs", "3", "--episodes-per-epoch", "8", "--batch-size", "4", "--episodes", "4"],
}
RESULT_KEYS = ("mIoU", "FB-IoU", "per_class_IoU", "classes_without_episodes", "fg_IoU", "bg_IoU", "final_train_loss")


def _command(preset: str, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dpcn_lite", "train", *BUDGETS[preset], "--run-dir", str(run_dir), "--no-progress",
            *extra]


def _run(preset: str, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != HOLD_ENV}
    done = subprocess.run(_command(preset, run_dir, *extra), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _kill_at(preset: str, run_dir: Path, hold: str, tmp_path: Path) -> None:
    """Start a training process, wait until it stops itself at ``hold``, then SIGKILL it."""
    ready = tmp_path / f"ready-{run_dir.name}"
    env = {**os.environ, HOLD_ENV: f"{hold}:{ready}"}
    process = subprocess.Popen(_command(preset, run_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert process.poll() is None, f"training ended before reaching {hold}: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"training never reached {hold}"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _equal(a, b) -> bool:
    """Bit-for-bit equality of nested checkpoint content (tensors, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _same_run(a: Path, b: Path) -> None:
    first, second = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (a, b))
    for name, tensor in first["model_state"].items():
        assert torch.equal(tensor, second["model_state"][name]), f"{name} differs"
    for key in ("epoch", "iteration", "optimizer_state", "scheduler_state", "scaler_state", "train_config"):
        assert _equal(first[key], second[key]), f"{key} differs"
    losses = [[json.loads(line)["loss"] for line in (p / "history.jsonl").read_text().splitlines()] for p in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    metrics_a, metrics_b = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert {k: metrics_a[k] for k in RESULT_KEYS} == {k: metrics_b[k] for k in RESULT_KEYS}


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_sigkill_during_an_epoch_and_during_a_checkpoint_write_then_resume_is_bit_exact(preset: str,
                                                                                       tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    _run(preset, straight)

    during_epoch = tmp_path / "during-epoch"
    _kill_at(preset, during_epoch, "step:4", tmp_path)  # epoch 2's second step (two steps per epoch in both budgets)
    assert torch.load(during_epoch / "checkpoint.pt", weights_only=True)["epoch"] == 1
    _run(preset, during_epoch, "--resume")
    _same_run(straight, during_epoch)

    during_write = tmp_path / "during-write"
    _kill_at(preset, during_write, "checkpoint:2", tmp_path)  # epoch 2 written to its temp file, not yet renamed
    orphans = list(during_write.glob(".checkpoint.pt.*.tmp"))
    assert len(orphans) == 1 and orphans[0].stat().st_size > 0
    assert torch.load(during_write / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the old one, intact
    resumed = _run(preset, during_write, "--resume")
    assert "removed 1 temp file" in resumed.stdout + resumed.stderr
    assert "taking over from a run that stopped" in resumed.stdout + resumed.stderr
    assert not list(during_write.glob("*.tmp")) and not list(during_write.glob(".*.tmp"))
    _same_run(straight, during_write)
