"""The training loop: one readable loop in plain PyTorch with the paper's optimiser settings, and DDP wiring.

The loop (:func:`fit`) is the paper's recipe (notes §2):

* SGD, momentum 0.9, weight decay 1e-4, over the trainable parameters only (the frozen backbone is left out); the
  ``cpu`` preset uses AdamW instead (``TrainConfig.optimizer``; why: ``docs/training.md``);
* two parameter groups, the head and the trainable backbone stage, each at its own LR: ``base_lr · lr_scale ·
  head_lr_scale`` and ``base_lr · lr_scale · backbone_lr_scale`` (the paper preset: head ×10, the PFENet convention);
* poly decay of every group, ``lr · (1 - iteration / max_iterations) ** 0.9``, updated every iteration
  (``torch.optim.lr_scheduler.PolynomialLR``);
* the objective of :meth:`FewShotSegmenter.loss` (``dpcn_lite.losses``): main cross-entropy + λ · reverse loss.

Around the loop: mixed precision on CUDA (``torch.autocast`` + ``GradScaler``; off on CPU), tqdm bars, one JSON line
per epoch in ``history.jsonl``, an atomic checkpoint at the end of every epoch, exact resume (model, optimiser,
scheduler, scaler, RNG states, epoch and iteration; the episode order of an epoch is a pure function of seed and
epoch; every process's RNG state is saved), a banner saying where the run runs (``dpcn_lite.run_info``), and DDP when
started by ``torchrun`` (``dpcn_lite.distributed``: ``batch_size`` stays the *total* batch, each of N processes gets
``batch_size / N`` episodes and the same number of steps, and the LR is unchanged). The model, the episodes and an
optional feature cache come from ``dpcn_lite.experiment``, which also evaluates the result.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data_utils.episodes import EpisodeDataset, collate_episodes, move_batch
from dpcn_lite.backbones import EpisodeFeatures
from data_utils.files import atomic_write, atomic_write_text, strict_json
from dpcn_lite.base import FewShotSegmenter
from dpcn_lite.checkpoint import (best_checkpoint, capture_rng_state, load_checkpoint, restore_rng_state,
                                  resume_training, training_checkpoint)
from dpcn_lite.config import TrainConfig
from dpcn_lite.distributed import (DistributedContext, EpochSampler, average_over_processes, check_ranks_agree,
                                   gather_objects, unused_parameters)
from dpcn_lite.errors import BadArgumentError, TrainingDivergedError
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.run_folder import claimed_run_folder
from dpcn_lite.run_info import describe_run, format_banner


def parameter_groups(cfg: TrainConfig, model: FewShotSegmenter) -> list[dict]:
    """The optimiser's groups: ``head`` (every trainable parameter outside the backbone) and, when the backbone's last
    stage trains, ``backbone``; each at its own LR (``TrainConfig.group_learning_rates``)."""
    rates = cfg.group_learning_rates
    head = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("backbone.")]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"name": "head", "params": head, "lr": rates["head"]}]
    if backbone:
        groups.append({"name": "backbone", "params": backbone, "lr": rates["backbone"]})
    return groups


def make_optimizer(cfg: TrainConfig, model: FewShotSegmenter) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's family), or AdamW (``cfg.optimizer == "adamw"``), over :func:`parameter_groups`."""
    groups = parameter_groups(cfg, model)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class _LossModule(nn.Module):
    """DDP synchronises gradients through ``forward``; this makes ``model.loss`` the forward of a module."""

    def __init__(self, model: FewShotSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, features: EpisodeFeatures | None = None) -> dict:
        return self.model.loss(batch, features=features)


# ======================================================================================================================
# The loop
# ======================================================================================================================


@dataclass
class TrainResult:
    model: FewShotSegmenter
    config: TrainConfig
    history: list[dict]
    checkpoint_path: Path | None
    seconds: float
    run_info: dict | None = None


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text("".join(strict_json(row) + "\n" for row in history), run_dir / "history.jsonl")


HOLD_ENV = "DPCN_TEST_HOLD"
"""Test-only: ``step:N:FILE`` or ``checkpoint:N:FILE`` makes the loop create FILE and stop itself (SIGSTOP) before
optimiser step N, or after writing epoch N's checkpoint to its temp file but before the rename, so that a test can
SIGKILL a real training process at an exact point; ``exit:N:FILE`` makes every process exit (status 75) right after
epoch N's checkpoint, like an interrupted job. Unset in normal use."""
HOLD_EXIT_STATUS = 75


def _test_hold(point: str, number: int) -> Path | None:
    """The ready-file of the test hook when it asks to hold at ``point`` number ``number``."""
    spec = os.environ.get(HOLD_ENV)
    if not spec:
        return None
    kind, at, ready = spec.split(":", 2)
    return Path(ready) if kind == point and int(at) == number else None


def _hold_here(point: str, number: int) -> None:
    ready = _test_hold(point, number)
    if ready is not None:
        ready.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # the test kills the process while it is stopped here


def _save_checkpoint(state: dict, path: Path, epoch: int) -> None:
    """Atomic checkpoint write (never half-written; see ``data_utils.files.atomic_write``)."""
    def write(file) -> None:
        torch.save(state, file)
        file.flush()
        _hold_here("checkpoint", epoch)
    atomic_write(path, write, "wb")


def _check_finite(loss: float, model: FewShotSegmenter, epoch: int, iteration: int, lr: float,
                  check_weights: bool = False) -> None:
    """Stop at the first non-finite loss, before its gradients touch the weights, and (``check_weights``, before
    each checkpoint) at non-finite weights: NaN weights are never written over good ones."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"Training diverged: the loss is {loss} at step {iteration + 1} (epoch {epoch + 1}, learning rate "
            f"{lr:.3g}). No weights of this epoch were saved: the run folder keeps the checkpoint of the last finished "
            "epoch, if any. Lower --lr and start a new --run-dir.")
    if check_weights and not all(bool(torch.isfinite(p).all()) for p in model.trainable_parameters()):
        raise TrainingDivergedError(f"Training diverged: non-finite weights at the end of epoch {epoch + 1} "
                                    f"(learning rate {lr:.3g}); they were not saved. Lower --lr and start a new "
                                    "--run-dir.")


def _find_unused(wrapped: nn.Module, loader: DataLoader, ctx: DistributedContext,
                 feature_cache: FeatureCache | None) -> bool:
    """Does one batch's loss leave trainable parameters unused? Decides DDP's ``find_unused_parameters`` (which costs
    a graph walk every step). The probe restores every RNG, so it changes nothing else of the run."""
    rng = capture_rng_state()
    try:
        batch = move_batch(next(iter(loader)), ctx.device)
        features = feature_cache.episode_features(batch) if feature_cache is not None else None
        return bool(unused_parameters(wrapped, wrapped(batch, features)["loss"]))
    finally:
        restore_rng_state(rng)


BEST_CHECKPOINT = "best.pt"


def _select(selector: Callable[[FewShotSegmenter], float], model: FewShotSegmenter, history: list[dict], row: dict,
            cfg: TrainConfig, run_dir: Path | None) -> float:
    """Score this epoch on held-out base-class episodes; keep its weights as ``best.pt`` when it is the best so far
    (ties keep the earlier epoch). Every RNG is restored, so selection changes nothing else of the run."""
    rng = capture_rng_state()
    try:
        score = float(selector(model))
    finally:
        restore_rng_state(rng)
        model.train()
    previous = [r["selection_mIoU"] for r in history if r.get("selection_mIoU") is not None]
    if run_dir is not None and (not previous or score > max(previous)):
        atomic_write(run_dir / BEST_CHECKPOINT, lambda file: torch.save(
            best_checkpoint(cfg, model, row["epoch"], row["iteration"], score), file), "wb")
    return score


def fit(
    cfg: TrainConfig,
    model: FewShotSegmenter,
    train_set: EpisodeDataset,
    ctx: DistributedContext,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    feature_cache: FeatureCache | None = None,
    selector: Callable[[FewShotSegmenter], float] | None = None,
) -> TrainResult:
    """Train ``model`` (already on ``ctx.device``) on ``train_set``; checkpoint and log into ``run_dir`` (if given).

    ``selector(model)`` (optional) scores the model after every epoch on held-out base-class episodes; the score is
    logged as ``selection_mIoU`` and the best epoch's weights are kept in ``run_dir/best.pt``.

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` exactly where it stopped (epoch granularity).
    ``on_epoch_end(row)`` is called after each epoch's checkpoint with that epoch's log row. With ``feature_cache``
    the head trains on cached backbone features instead of running the (frozen) backbone on every episode. The run
    folder is claimed first (``dpcn_lite.run_folder``): a foreign folder, a concurrent run, or ``resume`` without a
    checkpoint are refused before any work. A non-finite loss stops the run (``TrainingDivergedError``).
    """
    options = dict(resume=resume, progress=progress, on_epoch_end=on_epoch_end, feature_cache=feature_cache,
                   selector=selector)
    if run_dir is None:
        return _fit(cfg, model, train_set, ctx, None, **options)
    with claimed_run_folder(run_dir, resume=resume):
        return _fit(cfg, model, train_set, ctx, Path(run_dir), **options)


def _fit(
    cfg: TrainConfig,
    model: FewShotSegmenter,
    train_set: EpisodeDataset,
    ctx: DistributedContext,
    run_dir: Path | None,
    *,
    resume: bool,
    progress: bool,
    on_epoch_end: Callable[[dict], None] | None,
    feature_cache: FeatureCache | None,
    selector: Callable[[FewShotSegmenter], float] | None,
) -> TrainResult:
    """:func:`fit` inside its claimed run folder."""
    started = time.perf_counter()
    checkpoint_path = run_dir / "checkpoint.pt" if run_dir is not None else None
    if cfg.batch_size % ctx.world_size:
        raise BadArgumentError(f"batch_size={cfg.batch_size} must divide evenly over {ctx.world_size} processes.")
    per_process_batch = cfg.batch_size // ctx.world_size
    sampler = EpochSampler(len(train_set), ctx.rank, ctx.world_size)
    # Workers are re-created every epoch (not persistent) so they see the dataset's new epoch.
    loader = DataLoader(train_set, batch_size=per_process_batch, sampler=sampler, collate_fn=collate_episodes,
                        num_workers=cfg.num_workers, drop_last=True, pin_memory=ctx.device.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise BadArgumentError(f"episodes_per_epoch is smaller than one batch per process ({per_process_batch}).")
    max_iterations = cfg.epochs * steps_per_epoch

    optimizer = make_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_iterations, power=cfg.poly_power)
    use_amp = cfg.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    # --- resume: the checkpoint is read on the CPU (RNG states must be CPU tensors), then moved where it belongs ---
    start_epoch, iteration, history = 0, 0, []
    if resume and checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path, map_location="cpu")
        start_epoch, iteration, history = resume_training(state, cfg, model, optimizer, scheduler, scaler,
                                                          rank=ctx.rank, world_size=ctx.world_size)
    wrapped: nn.Module = _LossModule(model)
    find_unused = None
    if ctx.world_size > 1:
        find_unused = _find_unused(wrapped, loader, ctx, feature_cache)
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=find_unused)
    run_info = describe_run(cfg, ctx, episodes_per_epoch=len(train_set), steps_per_epoch=steps_per_epoch,
                            group_lrs={g["name"]: g["initial_lr"] for g in optimizer.param_groups},
                            find_unused_parameters=find_unused)
    if ctx.is_main:
        print(format_banner(cfg, run_info), flush=True)
        if run_dir is not None:
            _write_history(run_dir, history)  # on resume: drops lines of epochs logged but not checkpointed
            atomic_write_text(strict_json({**cfg.resolved_dict(), "run": run_info}, indent=2) + "\n",
                              run_dir / "config.json")

    # --- epochs ---------------------------------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        epoch_started = time.perf_counter()
        sums = {"loss": 0.0, "main": 0.0, "reverse": 0.0}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and ctx.is_main))
        for batch in bar:
            _hold_here("step", iteration + 1)
            batch = move_batch(batch, ctx.device)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=use_amp):
                features = feature_cache.episode_features(batch) if feature_cache is not None else None
                out = wrapped(batch, features)
            _check_finite(float(out["loss"].detach()), model, epoch, iteration, scheduler.get_last_lr()[0])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()  # poly decay, every iteration
            iteration += 1
            for key in sums:
                sums[key] += float(out[key].detach())
            bar.set_postfix(loss=f"{float(out['loss'].detach()):.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
        row = {
            "epoch": epoch + 1,
            "iteration": iteration,
            "lr": rates["head"],
            **{f"lr_{name}": lr for name, lr in rates.items()},
            **{key: value / steps_per_epoch for key, value in sums.items()},
            "seconds": time.perf_counter() - epoch_started,
        }
        if ctx.world_size > 1:
            row.update(average_over_processes({k: row[k] for k in sums}, ctx.device))
        _check_finite(row["loss"], model, epoch, iteration - 1, rates["head"], check_weights=True)
        if selector is not None and ctx.is_main:
            row["selection_mIoU"] = _select(selector, model, history, row, cfg, run_dir)
        history.append(row)
        rng_states = gather_objects(ctx, capture_rng_state())  # every process's, for an exact resume
        if ctx.is_main and run_dir is not None:
            _save_checkpoint(training_checkpoint(cfg, model, optimizer, scheduler, scaler, epoch + 1, iteration,
                                                 history, rng_states=rng_states), checkpoint_path, epoch + 1)
            with open(run_dir / "history.jsonl", "a", encoding="utf-8") as log:
                log.write(strict_json(row) + "\n")
        if on_epoch_end is not None:
            on_epoch_end(row)
        if _test_hold("exit", epoch + 1) is not None:
            ctx.barrier()  # the checkpoint is on disk before any process leaves
            os._exit(HOLD_EXIT_STATUS)

    if ctx.world_size > 1:
        run_info["weights_checksum_per_process"] = check_ranks_agree(ctx, model)
    model.eval()
    return TrainResult(model, cfg, history, checkpoint_path, time.perf_counter() - started, run_info)
