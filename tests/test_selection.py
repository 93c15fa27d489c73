"""Best-epoch selection on held-out base-class episodes: never the test fold's classes, and it changes nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dpcn_lite.checkpoint import load_checkpoint
from dpcn_lite.config import resolve_config
from dpcn_lite.experiment import make_source, run_experiment, selection_episodes


def tiny_config(**overrides):
    values = dict(epochs=3, episodes_per_epoch=4, batch_size=2, synthetic_images_per_class=4, eval_episodes=6)
    values.update(overrides)
    return resolve_config("tiny", **values)


def test_selection_episodes_target_base_classes_on_held_out_images() -> None:
    cfg = tiny_config(selection_episodes=40)
    source = make_source(cfg)
    episodes = selection_episodes(cfg, source)
    novel = set(source.fold_classes(cfg.fold, "test"))
    drawn = {spec.class_id for spec in episodes.episode_list()}
    assert drawn and not drawn & novel and drawn <= set(source.fold_classes(cfg.fold, "train"))
    test_images = set(source.image_ids("test"))
    assert all(spec.query_id in test_images for spec in episodes.episode_list())  # never a training image
    assert len(episodes) == 40
    assert resolve_config("paper", "pascal").selection_episodes == 300 and resolve_config("cpu").selection_episodes == 0


def test_the_best_epoch_is_kept_and_reported_beside_the_last(tmp_path: Path) -> None:
    plain = run_experiment(tiny_config(), tmp_path / "plain", progress=False, figures=False)
    selected = run_experiment(tiny_config(selection_episodes=6), tmp_path / "selected", progress=False, figures=False)
    # selection restores every RNG: the trained weights and the last-epoch metrics are those of the plain run
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt")["model_state"] for name in ("plain", "selected"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert selected["mIoU"] == plain["mIoU"] and "best_epoch" not in plain
    history = [json.loads(line) for line in (tmp_path / "selected" / "history.jsonl").read_text().splitlines()]
    scores = [row["selection_mIoU"] for row in history]
    best = load_checkpoint(tmp_path / "selected" / "best.pt")
    assert best["epoch"] == 1 + scores.index(max(scores)) and best["selection_mIoU"] == max(scores)
    report = json.loads((tmp_path / "selected" / "metrics.json").read_text())["best_epoch"]
    assert report["epoch"] == best["epoch"] and 0.0 <= report["mIoU"] <= 100.0
    assert "base-class" in report["selected_on"]
