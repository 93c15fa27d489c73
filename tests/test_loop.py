"""The training loop (`dpcn_lite.loop`, driven by `experiment.train`): exact resume, the poly schedule with the explicit LR scale, DDP's single-process path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dpcn_lite.checkpoint import RESUME_MAY_DIFFER, load_checkpoint, resume_differences
from dpcn_lite.errors import ResumeMismatchError
from dpcn_lite.evaluate import evaluate
from dpcn_lite.config import TrainConfig, resolve_config
from dpcn_lite.experiment import episodes_for_config, train


def tiny_config(**overrides) -> TrainConfig:
    """A few steps on a small synthetic pool: seconds on a laptop."""
    values = dict(epochs=2, episodes_per_epoch=4, batch_size=2, synthetic_images_per_class=4, eval_episodes=6)
    values.update(overrides)
    return resolve_config("tiny", **values)


class Interrupt(Exception):
    pass


def _stop_after_first_epoch(row: dict) -> None:
    if row["epoch"] == 1:
        raise Interrupt


def _metrics(model, cfg: TrainConfig) -> dict:
    return evaluate(model, episodes_for_config(cfg, "test", seed=0, episodes=cfg.eval_episodes), batch_size=3, progress=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resuming_an_interrupted_run_gives_the_same_model_and_metrics(tmp_path: Path, optimizer: str) -> None:
    cfg = tiny_config(optimizer=optimizer)
    straight = train(cfg, tmp_path / "straight", progress=False)

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "interrupted", progress=False, on_epoch_end=_stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")["epoch"] == 1
    resumed = train(cfg, tmp_path / "interrupted", resume=True, progress=False)

    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    assert _metrics(resumed.model, cfg) == _metrics(straight.model, cfg)
    # the log holds each epoch once, as in the uninterrupted run
    logged = [json.loads(line) for line in (tmp_path / "interrupted" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [1, 2]


@pytest.mark.parametrize("change, listed", [
    (dict(base_lr=0.5), "base_lr: 0.01 in the checkpoint, 0.5 now"),
    (dict(feature_cache=False), "feature_cache: True in the checkpoint, False now"),  # 37 of 325 tensors differed
    (dict(amp=False), "amp"), (dict(augment=False), "augment"), (dict(cache_dtype="float32"), "cache_dtype"),
    (dict(data_root="elsewhere"), "data_root"), (dict(synthetic_images_per_class=5), "synthetic_images_per_class"),
    (dict(eval_episodes=7), "eval_episodes"),
])
def test_resume_refuses_every_setting_that_changes_the_result(tmp_path: Path, change: dict, listed: str) -> None:
    train(tiny_config(epochs=1), tmp_path, progress=False)
    config_before = (tmp_path / "config.json").read_text()
    with pytest.raises(ResumeMismatchError, match=listed):
        train(tiny_config(epochs=1, **change), tmp_path, resume=True, progress=False)
    assert (tmp_path / "config.json").read_text() == config_before  # not rewritten as if the run had used it


def test_resume_allows_only_the_named_harmless_settings(tmp_path: Path) -> None:
    assert set(RESUME_MAY_DIFFER) == {"num_workers", "eval_batch_size"}
    train(tiny_config(epochs=1), tmp_path, progress=False)
    train(tiny_config(epochs=1, eval_batch_size=2), tmp_path, resume=True, progress=False)


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_default(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("test_scales", "selection_episodes", "head_lr_scale"):
        del state["train_config"][key]
    del state["model_config"]["mask_support_high"]
    assert resume_differences(state, cfg) == {}
    state["train_config"]["head_lr_scale"] = 10.0  # a recorded value still has to match
    assert resume_differences(state, cfg) == {"head_lr_scale": (10.0, 1.0)}


def test_resume_lists_model_settings_that_changed_in_the_preset(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["model_config"]["channels"] = 32  # as if the preset had been edited since the run started
    assert resume_differences(state, cfg) == {"model.channels": (32, 16)}


def test_poly_schedule_with_explicit_lr_scale(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=2, episodes_per_epoch=6, base_lr=0.002, lr_scale=10.0)
    result = train(cfg, tmp_path, progress=False)
    total = 2 * 3  # epochs x steps per epoch (6 episodes / batch 2)
    first = result.history[0]
    assert first["iteration"] == 3
    assert first["lr"] == pytest.approx(0.002 * 10.0 * (1 - 3 / total) ** 0.9)
    assert result.history[-1]["lr"] == pytest.approx(0.0)
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved["effective_lr"] == pytest.approx(0.02)
    optimizer = load_checkpoint(tmp_path / "checkpoint.pt")["optimizer_state"]
    assert optimizer["param_groups"][0]["momentum"] == 0.9
    assert optimizer["param_groups"][0]["weight_decay"] == 1e-4


def test_adamw_trains_with_its_own_state(tmp_path: Path) -> None:
    result = train(tiny_config(epochs=1, optimizer="adamw", base_lr=0.001), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")["optimizer_state"]
    group = state["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 1e-4 and "momentum" not in group
    assert all("exp_avg" in s for s in state["state"].values())
    assert result.history[0]["iteration"] == 2


def test_training_lowers_the_loss_on_a_fixed_pool(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=6, episodes_per_epoch=8, base_lr=0.05)
    history = train(cfg, None, progress=False).history
    assert history[-1]["main"] < history[0]["main"]


def test_paper_presets_follow_the_paper() -> None:
    pascal = resolve_config("paper", "pascal")
    coco = resolve_config("paper", "coco")
    assert (pascal.base_lr, pascal.batch_size, pascal.epochs, pascal.lr_scale) == (0.005, 8, 200, 1.0)
    assert (coco.base_lr, coco.batch_size, coco.epochs) == (0.002, 32, 50)
    assert coco.model_config().train_layer4 is False and coco.model_config().sam_windows == ((1, 1),)
    assert pascal.model_config().train_layer4 is True
    assert pascal.optimizer == coco.optimizer == "sgd"


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="model="):
        resolve_config("tiny", model="unet")
    with pytest.raises(ValueError, match="shots"):
        resolve_config("tiny", shots=0)
    with pytest.raises(ValueError, match="preset"):
        resolve_config("huge")
    with pytest.raises(ValueError, match="optimizer="):
        resolve_config("tiny", optimizer="adam")


def test_single_process_ddp_through_torchrun_variables(tmp_path: Path, monkeypatch) -> None:
    import torch.distributed as dist

    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29533"}.items():
        monkeypatch.setenv(name, value)
    result = train(tiny_config(epochs=1), tmp_path, progress=False, device="cpu")
    assert len(result.history) == 1 and (tmp_path / "checkpoint.pt").is_file()
    assert not dist.is_initialized()  # the loop cleans up the process group it created
