"""The command line end to end with a tiny budget: every run-folder file, the metrics keys, evaluate and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_utils.synthetic import DEFAULT_BENCHMARK, get_benchmark
from dpcn_lite.__main__ import main
from dpcn_lite.checkpoint import load_checkpoint

RUN_FILES = {"config.json", "checkpoint.pt", "history.jsonl", "metrics.json", "training_curves.png", "predictions.png"}
METRIC_KEYS = {"mIoU", "FB-IoU", "per_class_IoU", "episodes", "shots", "fold", "seed"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "quick"
    assert main(["train", "--preset", "tiny", "--run-dir", str(folder), "--episodes", "6", "--epochs", "2",
                 "--episodes-per-epoch", "4", "--no-progress"]) == 0
    return folder


def test_train_writes_every_run_file_with_the_metrics_keys(run_dir: Path, capsys) -> None:
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["episodes"] == 6 and metrics["shots"] == 1 and metrics["fold"] == 0 and metrics["seed"] == 0
    assert set(metrics["per_class_IoU"]) == {"1", "2", "3", "4", "5"}  # fold 0's novel classes
    assert 0.0 <= metrics["mIoU"] <= 100.0
    assert metrics["benchmark"] == get_benchmark(DEFAULT_BENCHMARK).tag
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["preset"] == "tiny" and config["model"]["backbone"] == "tiny_cnn"
    for png in ("training_curves.png", "predictions.png"):
        with Image.open(run_dir / png) as image:
            assert image.format == "PNG" and image.width > 100
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 2


def test_train_refuses_to_overwrite_a_run_without_resume(run_dir: Path) -> None:
    with pytest.raises(SystemExit, match="--resume"):
        main(["train", "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress"])


def test_evaluate_a_checkpoint_with_several_seeds(run_dir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "4", "--eval-seeds", "0", "1",
                 "--output", str(output), "--no-progress"]) == 0
    metrics = json.loads(output.read_text())
    assert metrics["eval_seeds"] == [0, 1] and metrics["episodes"] == 4
    assert metrics["benchmark"] == get_benchmark(DEFAULT_BENCHMARK).tag
    assert "±" in capsys.readouterr().out


def test_predict_draws_a_png(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.png"
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoint.pt"), "--episodes", "2",
                 "--output", str(output)]) == 0
    with Image.open(output) as image:
        assert image.format == "PNG"


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("train", "evaluate", "predict"))


def test_ablation_flags_need_the_dpcn_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--model dpcn"):
        main(["train", "--preset", "tiny", "--model", "prototype", "--no-sam", "--run-dir", str(tmp_path / "x")])
