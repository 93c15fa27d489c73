"""Run folders are never clobbered: a marker of ours, a lock against a second run, tidy temp files, strict resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_utils import files
from dpcn_lite.__main__ import main
from dpcn_lite.config import resolve_config
from dpcn_lite.errors import RunFolderError, TrainingDivergedError
from dpcn_lite.experiment import train
from dpcn_lite.run_folder import MARKER, OWNER, check_run_folder, claimed_run_folder

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    values = dict(epochs=1, episodes_per_epoch=4, batch_size=2, synthetic_images_per_class=4, eval_episodes=6)
    values.update(overrides)
    return resolve_config("tiny", **values)


def test_a_folder_holding_someone_elses_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"mine": true}')
    (tmp_path / "metrics.json").write_text('{"mIoU": 99}')
    with pytest.raises(RunFolderError, match="not a dpcn-lite run folder"):
        train(tiny_config(), tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text()) == {"mine": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.json"]


def test_a_run_folder_is_marked_and_a_second_run_into_it_needs_resume(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / MARKER).read_text())["format"] == "dpcn-lite-run-1"
    assert not (tmp_path / "run" / OWNER).exists()  # released at the end
    with pytest.raises(RunFolderError, match="already holds a run. Add --resume"):
        train(tiny_config(), tmp_path / "run", progress=False)


def test_resume_on_a_folder_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="Nothing to resume"):
        train(tiny_config(), tmp_path / "mistyped", resume=True, progress=False)
    assert not (tmp_path / "mistyped").exists()


def test_a_run_dir_that_is_a_file_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    started = time.perf_counter()
    assert main(["train", "--preset", "tiny", "--run-dir", str(target), "--no-progress"]) == 2
    assert time.perf_counter() - started < 5  # refused at once (it used to fail after 14 s of work)
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_orphan_temp_files_of_a_killed_write_are_removed_on_claim(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / MARKER).write_text('{"format": "dpcn-lite-run-1"}')
    orphan = folder / ".checkpoint.pt.abc123.tmp"
    orphan.write_bytes(b"x" * 1000)
    messages: list[str] = []
    with claimed_run_folder(folder, resume=False, log=messages.append):
        assert not orphan.exists()
    assert any("removed 1 temp file" in m for m in messages)


def test_every_replace_flushes_the_folder(tmp_path: Path, monkeypatch) -> None:
    flushed: list[Path] = []
    monkeypatch.setattr(files, "fsync_folder", lambda folder: flushed.append(Path(folder)))
    files.atomic_write_text("{}", tmp_path / "a.json")
    assert flushed == [tmp_path]


HOLDER = """
import sys, time
from dpcn_lite.run_folder import claimed_run_folder
with claimed_run_folder(sys.argv[1], resume=False):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_concurrent_run_is_refused_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RunFolderError, match=f"Another run is writing to .*process {holder.pid}"):
            train(tiny_config(), folder, progress=False)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, as when a Colab tab is closed
        holder.wait()
    assert (folder / OWNER).exists()  # left behind by the dead holder
    messages: list[str] = []
    with claimed_run_folder(folder, resume=False, log=messages.append):
        pass
    assert any(f"taking over from a run that stopped" in m and str(holder.pid) in m for m in messages)


def test_a_diverging_run_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=3, episodes_per_epoch=8, base_lr=20.0)  # SGD at 20: NaN within a few steps
    with pytest.raises(TrainingDivergedError, match=r"the loss is nan at step \d+ \(epoch \d"):
        train(cfg, tmp_path, progress=False)
    if (tmp_path / "checkpoint.pt").exists():
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert state["epoch"] < 3
        assert all(bool(torch.isfinite(t).all()) for t in state["model_state"].values() if t.is_floating_point())
    for line in (tmp_path / "history.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in history.jsonl"))


def test_the_cli_refuses_non_finite_and_non_positive_learning_rates(tmp_path: Path, capsys) -> None:
    for value in ("nan", "inf", "0", "-1"):
        with pytest.raises(SystemExit) as stopped:
            main(["train", "--preset", "tiny", "--lr", value, "--run-dir", str(tmp_path / "r")])
        assert stopped.value.code == 2
        assert "argument --lr" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_check_run_folder_writes_nothing(tmp_path: Path) -> None:
    assert check_run_folder(tmp_path / "new", resume=False) == tmp_path / "new"
    assert not (tmp_path / "new").exists()
    assert os.listdir(tmp_path) == []


def test_an_absurd_learning_rate_is_one_line_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["train", "--preset", "tiny", "--lr", "1000", "--run-dir", str(tmp_path / "r")]) == 2
    assert "base_lr (--lr)=1000.0 must be a finite number in (0, 100]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_metrics_with_a_nan_are_written_as_valid_json(tmp_path: Path) -> None:
    from dpcn_lite.evaluate import write_metrics

    write_metrics({"mIoU": float("nan"), "per_class_IoU": {"1": float("inf"), "2": 0.5}}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mIoU": None, "per_class_IoU": {"1": None, "2": 0.5}}
