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


def test_train_refuses_to_overwrite_a_run_without_resume(run_dir: Path, capsys) -> None:
    assert main(["train", "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress"]) == 2
    assert "Add --resume" in capsys.readouterr().err


def test_outputs_are_strict_json_with_the_classes_without_episodes(run_dir: Path) -> None:
    def refuse(name: str):
        raise AssertionError(f"{name} is not JSON")
    metrics = json.loads((run_dir / "metrics.json").read_text(), parse_constant=refuse)
    assert isinstance(metrics["classes_without_episodes"], list)
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)
    json.loads((run_dir / "config.json").read_text(), parse_constant=refuse)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--pretrained", "../cpu-synthetic-fold0"], "No shipped checkpoint named '../cpu-synthetic-fold0'"),
    (["evaluate", "--run-dir", "no-such-run"], "No checkpoint at no-such-run"),
    (["train", "--preset", "tiny", "--resume", "--run-dir", "no-such-run"], "Nothing to resume"),
    (["train", "--preset", "tiny", "--model", "prior", "--no-dcm"], "use them with --model dpcn"),
    (["evaluate", "--dataset", "pascal", "--data-root", "no-such-data", "--pretrained", "cpu-synthetic-fold0"],
     "python -m data_utils.prepare pascal"),
])
def test_a_user_error_is_one_line_and_exit_2(argv: list[str], message: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one message (a data error may show its command on its own line)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_debug_shows_the_traceback_and_a_bug_keeps_it(monkeypatch) -> None:
    from dpcn_lite import __main__ as cli
    from dpcn_lite.errors import CheckpointError

    with pytest.raises(CheckpointError):
        main(["evaluate", "--run-dir", "no-such-run", "--debug"])
    monkeypatch.setattr(cli, "_evaluate", lambda args: {}["a bug"])
    with pytest.raises(KeyError):
        main(["evaluate", "--run-dir", "anything"])


@pytest.mark.parametrize("argv", [["evaluate", "--run-dir", "r", "--episodes", "0"],
                                  ["train", "--seed", "-1"], ["train", "--fold", "4"],
                                  ["train", "--epochs", "0"], ["evaluate", "--run-dir", "r", "--eval-seeds", "-3"]])
def test_bad_numbers_are_refused_before_any_work(argv: list[str], capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "error: argument" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_evaluate_a_checkpoint_with_several_seeds(run_dir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "4", "--eval-seeds", "0", "1",
                 "--output", str(output), "--no-progress"]) == 0
    metrics = json.loads(output.read_text())
    assert metrics["eval_seeds"] == [0, 1] and metrics["episodes"] == 4
    assert metrics["benchmark"] == get_benchmark(DEFAULT_BENCHMARK).tag
    assert "±" in capsys.readouterr().out


def test_evaluate_with_several_test_scales(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "multi.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "4", "--test-scales", "0.75", "1.0",
                 "--output", str(output), "--no-progress"]) == 0
    assert json.loads(output.read_text())["test_scales"] == [0.75, 1.0]
    assert json.loads((run_dir / "metrics.json").read_text())["test_scales"] == [1.0]


def test_predict_draws_a_png(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.png"
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoint.pt"), "--episodes", "2",
                 "--output", str(output)]) == 0
    with Image.open(output) as image:
        assert image.format == "PNG"
    folder_output = tmp_path / "from-folder.png"  # --checkpoint also takes the run folder; --out is --output
    assert main(["predict", "--checkpoint", str(run_dir), "--episodes", "1", "--out", str(folder_output)]) == 0
    assert folder_output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("train", "evaluate", "predict"))


def test_ablation_flags_need_the_dpcn_model(tmp_path: Path, capsys) -> None:
    assert main(["train", "--preset", "tiny", "--model", "prototype", "--no-sam", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--model dpcn" in capsys.readouterr().err
