"""Checkpoints: atomic writes, safe loads, exact RNG round trips, sha256-verified shipped files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dpcn_lite import checkpoint as ckpt
from dpcn_lite.errors import CheckpointError


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
    with pytest.raises(CheckpointError, match="weights_only=True") as caught:
        ckpt.load_checkpoint(path)
    assert "weights_only=False" not in str(caught.value)  # torch's advice to run the file's code is not passed on


def test_missing_and_truncated_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="Train first"):
        ckpt.load_checkpoint(tmp_path / "nothing.pt")
    path = tmp_path / "cut.pt"
    ckpt.atomic_save({"w": torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt"):
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
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        ckpt.verified_pretrained_path("demo")
    with pytest.raises(CheckpointError, match="available"):
        ckpt.pretrained_info("nope")
    (tmp_path / "demo.json").write_text(json.dumps({"file": "demo.pt"}))  # a record without a digest
    with pytest.raises(CheckpointError, match="'demo'.*no valid file name or sha256"):
        ckpt.verified_pretrained_path("demo")


def test_pretrained_accepts_registered_names_only(tmp_path: Path, monkeypatch) -> None:
    import json

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(ckpt, "PACKAGE_CHECKPOINTS", shipped)
    ckpt.atomic_save({"w": torch.ones(2)}, tmp_path / "mine.pt")
    (tmp_path / "mine.json").write_text(json.dumps({"file": "mine.pt", "sha256": ckpt.sha256_of(tmp_path / "mine.pt")}))
    with pytest.raises(CheckpointError, match="No shipped checkpoint named '../mine'.*--checkpoint PATH"):
        ckpt.verified_pretrained_path("../mine")


def _tiny_record(**changes) -> dict:
    from dpcn_lite.config import get_preset
    from dpcn_lite.model import build_model

    model = build_model("dpcn", get_preset("tiny"))
    record = {"format": ckpt.CHECKPOINT_FORMAT, "model_name": "dpcn", "model_config": model.config.to_dict(),
              "train_config": {}, "model_state": model.state_dict()}
    record.update(changes)
    return record


def test_a_foreign_config_is_refused_before_anything_is_allocated(monkeypatch) -> None:
    record = _tiny_record()
    record["model_config"]["channels"] = 200_000  # would allocate ~160 GB
    monkeypatch.setattr(ckpt, "build_model", lambda *a, **k: pytest.fail("the model was built before the check"))
    with pytest.raises(CheckpointError, match="channels=200000"):
        ckpt.build_model_from_checkpoint(record)


def test_weights_that_do_not_fit_are_refused_by_name_before_loading() -> None:
    record = _tiny_record()
    name = next(k for k, v in record["model_state"].items() if v.dim() == 4)
    record["model_state"][name] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(CheckpointError, match=f"wrong shapes.*{name}"):
        ckpt.build_model_from_checkpoint(record)
    with pytest.raises(CheckpointError, match="model 'unet'"):
        ckpt.build_model_from_checkpoint(_tiny_record(model_name="unet"))


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
