"""Several processes and GPUs, tested on the CPU: equal shares, per-group LRs, rank-0 writing, every rank's RNG state,
resume that reads on the CPU, and the banner that says where a run runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dpcn_lite import checkpoint as ckpt
from dpcn_lite import loop
from dpcn_lite.config import resolve_config
from dpcn_lite.distributed import DistributedContext, EpochSampler
from dpcn_lite.experiment import train
from dpcn_lite.loop import HOLD_ENV, HOLD_EXIT_STATUS
from dpcn_lite.run_info import run_warnings

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    values = dict(epochs=2, episodes_per_epoch=4, batch_size=2, synthetic_images_per_class=4, eval_episodes=6)
    values.update(overrides)
    return resolve_config("tiny", **values)


@pytest.mark.parametrize("episodes, world", [(5, 2), (7, 3), (8, 2), (1, 2)])
def test_every_process_gets_the_same_number_of_episodes_and_all_are_covered(episodes: int, world: int) -> None:
    shares = [list(EpochSampler(episodes, rank, world)) for rank in range(world)]
    assert len({len(share) for share in shares}) == 1  # unequal shares made one process wait forever
    assert set().union(*shares) == set(range(episodes))
    assert all(len(share) == len(EpochSampler(episodes, rank, world)) for rank, share in enumerate(shares))


def test_head_and_backbone_train_at_their_own_rates_and_both_are_logged(tmp_path: Path) -> None:
    paper = resolve_config("paper", "pascal")
    assert (paper.head_lr_scale, paper.backbone_lr_scale) == (10.0, 1.0)
    assert paper.group_learning_rates == pytest.approx({"head": 0.05, "backbone": 0.005})
    cfg = tiny_config(base_lr=0.002, head_lr_scale=10.0, backbone_lr_scale=0.5)  # tiny trains its last stage
    result = train(cfg, tmp_path, progress=False)
    groups = ckpt.load_checkpoint(tmp_path / "checkpoint.pt")["optimizer_state"]["param_groups"]
    assert [(g["name"], g["initial_lr"]) for g in groups] == [("head", pytest.approx(0.02)),
                                                             ("backbone", pytest.approx(0.001))]
    first = result.history[0]
    decay = (1 - 2 / 4) ** 0.9  # 2 of 4 steps done
    assert first["lr_head"] == pytest.approx(0.02 * decay) and first["lr_backbone"] == pytest.approx(0.001 * decay)
    assert first["lr"] == first["lr_head"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["effective_lr_per_group"] == pytest.approx({"head": 0.02, "backbone": 0.001})
    assert config["run"]["effective_lr_per_group"] == pytest.approx({"head": 0.02, "backbone": 0.001})


def test_resume_reads_the_checkpoint_on_the_cpu(tmp_path: Path, monkeypatch) -> None:
    """On CUDA the checkpoint used to be loaded onto the GPU and the RNG restore failed: the resume path must ask for
    the CPU whatever the device, and leave the move to the optimiser and the model."""
    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path, progress=False)
    asked: list = []
    real = loop.load_checkpoint
    monkeypatch.setattr(loop, "load_checkpoint", lambda path, map_location: asked.append(map_location) or
                        real(path, map_location=map_location))
    train(cfg, tmp_path, resume=True, progress=False)
    assert asked == ["cpu"]


def test_cuda_generators_are_restored_per_device_from_cpu_tensors(monkeypatch) -> None:
    restored: list = []
    state = ckpt.capture_rng_state()
    state["cuda"] = [torch.ByteTensor(16).zero_(), torch.ByteTensor(16).fill_(1)]  # two GPUs' generators
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.extend(states))
    ckpt.restore_rng_state(state)
    assert len(restored) == 2 and all(t.device.type == "cpu" and t.dtype == torch.uint8 for t in restored)


def test_a_resume_with_another_number_of_processes_is_refused(tmp_path: Path) -> None:
    from dpcn_lite.errors import ResumeMismatchError

    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path, progress=False)
    state = ckpt.load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["world_size"] == 1 and len(state["rng_states"]) == 1
    with pytest.raises(ResumeMismatchError, match=r"processes \(torchrun --nproc_per_node\): 1 in the checkpoint, 2"):
        ckpt.resume_training(state, cfg, None, None, None, None, rank=0, world_size=2)  # refused before any loading


def test_the_banner_warns_where_a_run_would_surprise(monkeypatch) -> None:
    cpu = DistributedContext(device=torch.device("cpu"))
    assert any("very slow" in w for w in run_warnings(resolve_config("paper", "pascal"), cpu))
    import shutil

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # a laptop without a GPU: nothing to warn about
    assert run_warnings(resolve_config("cpu"), cpu) == []
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert any("supports CUDA 13.0 and an NVIDIA driver is installed, but torch cannot use the GPU" in w
               for w in run_warnings(resolve_config("cpu"), cpu))


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "dpcn_lite", "train", "--preset", "tiny", "--epochs", "2", "--episodes-per-epoch", "5",
            "--batch-size", "2", "--episodes", "6", "--no-progress", "--device", "cpu"]


def _torchrun(run_dir: Path, hold: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (HOLD_ENV, "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    if hold:
        env[HOLD_ENV] = hold
    return subprocess.run([*TORCHRUN, "--run-dir", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_with_two_processes_trains_writes_once_and_resumes_exactly(tmp_path: Path) -> None:
    """5 episodes over 2 processes (this used to hang), one summary, identical weights on both processes, and one
    epoch, an interruption, then --resume equals two epochs straight."""
    straight = _torchrun(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    lines = straight.stdout.splitlines()
    assert sum(line.startswith("mIoU") for line in lines) == 1 and sum(line.startswith("run: dpcn") for line in lines) == 1
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    sums = metrics["weights_checksum_per_process"]
    assert metrics["processes"] == 2 and len(sums) == 2 and sums[0] == sums[1]
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["run"]["world_size"] == 2 and config["run"]["backend"] == "gloo"
    assert config["run"]["steps_per_epoch"] == 3  # ceil(5 / 2) episodes per process, batch 1 per process

    interrupted = _torchrun(tmp_path / "resumed", hold=f"exit:1:{tmp_path / 'unused'}")
    assert interrupted.returncode != 0 and f"exitcode: {HOLD_EXIT_STATUS}" in interrupted.stderr
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["rng_states"]) == 2
    assert not torch.equal(state["rng_states"][0]["torch"], state["rng_states"][1]["torch"])
    resumed = subprocess.run([*TORCHRUN, "--run-dir", str(tmp_path / "resumed"), "--resume"], cwd=ROOT,
                             env={**{k: v for k, v in os.environ.items() if k != HOLD_ENV}, "OMP_NUM_THREADS": "1"},
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("straight", "resumed"))
    for name, tensor in first["model_state"].items():
        assert torch.equal(tensor, second["model_state"][name]), f"{name} differs after resume"
    assert [r["loss"] for r in first["history"]] == [r["loss"] for r in second["history"]]
