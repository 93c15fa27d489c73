"""Checkpoints: atomic writes, safe loads, exact RNG round trips, sha256-verified shipped files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dpcn_lite import checkpoint as ckpt


class Unpicklable:
    """torch.save fails on this halfway through writing (a stand-in for a crash or a full disk)."""

    def __reduce__(self):
        raise RuntimeError("simulated failure during the write")


def test_a_failing_write_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    ckpt.atomic_save({"weights": torch.arange(4.0), "epoch": 1}, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="simulated failure"):
        ckpt.atomic_save({"weights": torch.zeros(1000), "bad": Unpicklable()}, target)
    assert target.read_bytes() == before
    assert ckpt.load_checkpoint(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_load_uses_weights_only_and_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"payload": Path("anything")}, path)  # a class that weights_only does not allow
    with pytest.raises(RuntimeError, match="weights_only=True"):
        ckpt.load_checkpoint(path)


def test_missing_and_truncated_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Train first"):
        ckpt.load_checkpoint(tmp_path / "nothing.pt")
    path = tmp_path / "cut.pt"
    ckpt.atomic_save({"w": torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RuntimeError, match="corrupt"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    ckpt.atomic_save({"rng": ckpt.capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist())
    assert again == expected


def test_sha256_mismatch_of_a_shipped_checkpoint_is_refused(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setattr(ckpt, "PACKAGE_CHECKPOINTS", tmp_path)
    ckpt.atomic_save({"w": torch.ones(2)}, tmp_path / "demo.pt")
    (tmp_path / "demo.json").write_text(json.dumps({"file": "demo.pt", "sha256": ckpt.sha256_of(tmp_path / "demo.pt")}))
    assert ckpt.verified_pretrained_path("demo") == tmp_path / "demo.pt"
    (tmp_path / "demo.json").write_text(json.dumps({"file": "demo.pt", "sha256": "0" * 64}))
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        ckpt.verified_pretrained_path("demo")
    with pytest.raises(ValueError, match="available"):
        ckpt.pretrained_info("nope")


@pytest.mark.parametrize("name, head", [("cpu-synthetic-fold0", "DPCN"),
                                        ("cpu-synthetic-fold0-prototype", "PrototypeSegmenter")])
def test_the_shipped_checkpoints_load_verified_and_complete(name: str, head: str) -> None:
    info = ckpt.pretrained_info(name)
    assert info["benchmark"] == "categories-v2" and info["model"] in ("dpcn", "prototype")
    path = ckpt.verified_pretrained_path(name)
    assert path.stat().st_size < 10 * 2**20  # head only: a few MB
    stored = ckpt.load_checkpoint(path)["model_state"]
    assert not any(k.startswith("backbone.") for k in stored)
    model = ckpt.load_pretrained(name)
    assert not model.training and type(model).__name__ == head
    state = model.state_dict()
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name
    assert {"mIoU", "FB-IoU", "episodes", "shots", "fold"} <= set(info["metrics_percent"])
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 160, 160), torch.zeros(1, 1, 3, 160, 160), torch.ones(1, 1, 160, 160))
    assert out.logits.shape == (1, 2, 160, 160)
