"""Training: one readable loop in plain PyTorch, the paper's optimiser settings, and everything a real run needs.

The loop (:func:`train`) is the paper's recipe (notes §2):

* SGD, momentum 0.9, weight decay 1e-4, over the trainable parameters only (the frozen backbone is left out); the
  ``cpu`` preset uses AdamW instead (``TrainConfig.optimizer``; why: ``docs/training.md``);
* poly learning rate ``lr = base_lr · lr_scale · (1 - iteration / max_iterations) ** 0.9``, updated every iteration
  (``torch.optim.lr_scheduler.PolynomialLR``);
* the objective of :meth:`FewShotSegmenter.loss`: main cross-entropy + λ · reverse (query → support) loss.

``lr_scale`` makes PFENet's hidden ×10 explicit: PFENet/BAM code multiplies every parameter group's LR by 10, so a
"0.005" taken from that code family actually trained at 0.05. We default to the paper's number as written
(``lr_scale=1``) for the paper preset and say so; ``--lr-scale 10`` reproduces the code family's effective LR.

Around the loop: mixed precision on CUDA (``torch.autocast`` + ``GradScaler``; off on CPU), tqdm bars, one JSON line
per epoch in ``history.jsonl``, an atomic checkpoint at the end of every epoch, exact resume (model, optimiser,
scheduler, scaler, RNG states, epoch and iteration; the episode order of an epoch is a pure function of seed and
epoch), and DDP when started by ``torchrun`` (``batch_size`` stays the *total* batch: each of N processes gets
``batch_size / N`` episodes, and the LR is unchanged). Frozen-backbone presets train from the feature cache
(:mod:`dpcn_lite.feature_cache`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from dpcn_lite.base import FewShotSegmenter
from dpcn_lite.checkpoint import (
    atomic_save,
    atomic_write_text,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from dpcn_lite.config import DPCNConfig, get_preset
from dpcn_lite.utils import seed_everything

if TYPE_CHECKING:
    from dpcn_lite.feature_cache import FeatureCache

CHECKPOINT_FORMAT = "dpcn-lite-checkpoint-1"
MODEL_NAMES = ("dpcn", "prototype", "prior")
OPTIMIZERS = ("sgd", "adamw")
DATASETS = ("synthetic", "pascal", "coco")


# ======================================================================================================================
# Settings
# ======================================================================================================================


@dataclass
class TrainConfig:
    """Everything that decides a training run. Build it with :func:`resolve_config` (preset defaults + overrides)."""

    preset: str = "cpu"
    """Model preset of ``dpcn_lite.config`` (``paper``, ``cpu``, ``tiny``)."""
    dataset: str = "synthetic"
    model: str = "dpcn"
    """``dpcn``, ``prototype`` (PANet-like baseline) or ``prior`` (PFENet-like baseline)."""
    fold: int = 0
    shots: int = 1
    seed: int = 0
    epochs: int = 10
    episodes_per_epoch: int | None = 1000
    """Training episodes per epoch; ``None`` = one pass over the training pool (PFENet: every training image once)."""
    batch_size: int = 8
    """Total batch over all processes (DDP splits it; the LR is not rescaled)."""
    base_lr: float = 0.005
    lr_scale: float = 1.0
    """Multiplies ``base_lr``: 10 reproduces PFENet/BAM's hidden ×10 (their effective LR)."""
    optimizer: str = "sgd"
    """``sgd`` (the paper's family: momentum 0.9) or ``adamw`` (the cpu preset's choice for its short budget)."""
    momentum: float = 0.9
    """SGD momentum (unused by AdamW, which keeps its default betas 0.9 / 0.999)."""
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    amp: bool = True
    """Mixed precision (float16 autocast + GradScaler) when training on CUDA; ignored on the CPU."""
    feature_cache: bool = True
    """Train from cached backbone features when the backbone is fully frozen (no augmentation then)."""
    cache_dtype: str = "float16"
    """Storage type of cached features (float16 halves the memory; float32 is bit-exact)."""
    augment: bool = True
    """PFENet's augmentation when training through the backbone (the feature cache always trains without it)."""
    num_workers: int = 0
    eval_episodes: int = 1000
    eval_seeds: tuple[int, ...] = (0,)
    """Test-episode seeds; several give mean ± std."""
    eval_batch_size: int = 8
    data_root: str | None = None
    synthetic_images_per_class: int | None = None
    """Size of the synthetic benchmark (None = its default); small values make quick tests."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """DPCNConfig fields changed from the preset (e.g. ``{"use_sam": False}`` for an ablation)."""

    def __post_init__(self) -> None:
        self.eval_seeds = tuple(int(s) for s in self.eval_seeds)
        if self.model not in MODEL_NAMES:
            raise ValueError(f"model={self.model!r} is not known; choose one of {list(MODEL_NAMES)}.")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not known; choose one of {list(DATASETS)}.")
        if self.shots < 1:
            raise ValueError(f"shots={self.shots}: an episode needs at least one support image (k >= 1).")
        for name in ("epochs", "batch_size", "eval_episodes", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.episodes_per_epoch is not None and self.episodes_per_epoch < self.batch_size:
            raise ValueError(f"episodes_per_epoch={self.episodes_per_epoch} is smaller than one batch ({self.batch_size}).")
        if self.base_lr <= 0 or self.lr_scale <= 0:
            raise ValueError("base_lr and lr_scale must be positive.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not known; choose one of {list(OPTIMIZERS)}.")
        if self.cache_dtype not in ("float16", "float32"):
            raise ValueError(f"cache_dtype={self.cache_dtype!r}: use 'float16' or 'float32'.")

    @property
    def learning_rate(self) -> float:
        """The LR the optimiser actually starts from: ``base_lr · lr_scale``."""
        return self.base_lr * self.lr_scale

    def model_config(self) -> DPCNConfig:
        """The resolved DPCNConfig: preset, dataset-specific switches (COCO: frozen backbone, plain prior), overrides."""
        dataset_switches: dict[str, Any] = {}
        if self.preset == "paper" and self.dataset == "coco":
            dataset_switches = {"train_layer4": False, "sam_windows": ((1, 1),)}  # paper §4: COCO setting
        return get_preset(self.preset, **{**dataset_switches, **self.model_overrides})

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["eval_seeds"] = list(self.eval_seeds)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {unknown}; valid fields are {sorted(known)}.")
        return cls(**values)


TRAINING_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # The paper (notes §2): PASCAL-5i LR 0.005, batch 8, 200 epochs; COCO-20i LR 0.002, batch 32, 50 epochs.
    # One epoch = one pass over the training pool, as in PFENet.
    ("paper", "pascal"): dict(epochs=200, batch_size=8, base_lr=0.005, episodes_per_epoch=None, feature_cache=False),
    ("paper", "coco"): dict(epochs=50, batch_size=32, base_lr=0.002, episodes_per_epoch=None, feature_cache=False),
    ("paper", "synthetic"): dict(epochs=200, batch_size=8, base_lr=0.005, episodes_per_epoch=None,
                                 feature_cache=False),
    # The CPU preset: frozen Lite0 backbone, features cached once, the narrow head trained for a few minutes on 2
    # cores with AdamW (a choice, docs/training.md): in 1,200 steps SGD at the paper's 0.005 never left the
    # all-background regime on the synthetic benchmark, and PFENet's hidden x10 (0.05) kills the support pathways.
    ("cpu", "synthetic"): dict(epochs=30, batch_size=8, optimizer="adamw", base_lr=0.001, lr_scale=1.0,
                               episodes_per_epoch=800),
    ("cpu", "pascal"): dict(epochs=12, batch_size=8, optimizer="adamw", base_lr=0.001, lr_scale=1.0,
                            episodes_per_epoch=2000),
    ("cpu", "coco"): dict(epochs=12, batch_size=8, optimizer="adamw", base_lr=0.001, lr_scale=1.0,
                          episodes_per_epoch=4000),
    # Tests: a few steps.
    ("tiny", "synthetic"): dict(epochs=1, batch_size=2, base_lr=0.01, episodes_per_epoch=4, eval_episodes=8,
                                eval_batch_size=4),
}


def resolve_config(preset: str = "cpu", dataset: str = "synthetic", **overrides: Any) -> TrainConfig:
    """Preset defaults for ``(preset, dataset)`` with ``overrides`` on top: ``resolve_config("cpu", epochs=2)``."""
    defaults = TRAINING_PRESETS.get((preset, dataset), TRAINING_PRESETS.get((preset, "synthetic")))
    if defaults is None:
        raise ValueError(f"No training settings for preset={preset!r}; presets: {sorted({p for p, _ in TRAINING_PRESETS})}.")
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "episodes_per_epoch"}
    return TrainConfig(preset=preset, dataset=dataset, **{**defaults, **overrides})


# ======================================================================================================================
# Models and data
# ======================================================================================================================


def build_model(name: str, config: DPCNConfig) -> FewShotSegmenter:
    """``dpcn``, ``prototype`` or ``prior`` on the given config (all share the FewShotSegmenter base)."""
    if name == "dpcn":
        from dpcn_lite.model import DPCN

        return DPCN(config)
    if name == "prototype":
        from dpcn_lite.baselines import PrototypeSegmenter

        return PrototypeSegmenter(config)
    if name == "prior":
        from dpcn_lite.baselines import PriorMaskSegmenter

        return PriorMaskSegmenter(config)
    raise ValueError(f"Unknown model {name!r}; choose one of {list(MODEL_NAMES)}.")


def _normalization_for(model_config: DPCNConfig):
    from data_utils.transforms import Normalization

    from dpcn_lite.backbones import normalization_of

    mean, std = normalization_of(model_config.backbone)
    return Normalization(mean=tuple(mean), std=tuple(std))


def make_source(cfg: TrainConfig):
    """The dataset source; the synthetic benchmark is rendered at the preset's image size and kept in memory."""
    from data_utils.datasets import get_source

    if cfg.dataset == "synthetic":
        # Rendering an image costs milliseconds; the whole pool at 160 px is under 100 MB, so keep it all.
        options = {} if cfg.synthetic_images_per_class is None else {"images_per_class": cfg.synthetic_images_per_class}
        return get_source("synthetic", image_size=cfg.model_config().image_size, cache_size=4096, **options)
    return get_source(cfg.dataset, root=cfg.data_root)


def make_episodes(cfg: TrainConfig, split: str, *, seed: int, episodes: int | None = None,
                  augment: bool = False, source=None):
    """An ``EpisodeDataset`` of fold ``cfg.fold``: ``split="train"`` on the base classes, ``"test"`` on the novel ones.

    ``episodes=None`` means one episode per (image, class) pair of the split: PFENet's "one pass" epoch.
    """
    from data_utils.episodes import EpisodeDataset
    from data_utils.transforms import test_transform, train_transform

    model_config = cfg.model_config()
    normalization = _normalization_for(model_config)
    size = model_config.image_size
    transform = train_transform(size, normalization) if augment else test_transform(size, normalization)
    source = source if source is not None else make_source(cfg)
    dataset = EpisodeDataset(source, fold=cfg.fold, split=split, shots=cfg.shots, episodes=episodes or 1, seed=seed,
                             transform=transform)
    if episodes is None:
        dataset = EpisodeDataset(source, fold=cfg.fold, split=split, shots=cfg.shots, episodes=len(dataset.pairs),
                                 seed=seed, transform=transform)
    return dataset


def collate(batch: list[dict]) -> dict:
    from data_utils.episodes import collate_episodes

    return collate_episodes(batch)


class EpochSampler(Sampler[int]):
    """Episode indices ``0 .. n-1`` of one epoch, split between DDP processes (rank ``r`` takes every ``world``-th).

    The randomness lives in the dataset: training episode ``i`` of epoch ``e`` is drawn from ``(seed, e, i)``
    (``EpisodeDataset.set_epoch``), so resuming at an epoch boundary replays exactly the episodes an uninterrupted run
    would have seen, in any number of processes and workers.
    """

    def __init__(self, episodes: int, rank: int = 0, world_size: int = 1):
        self.episodes, self.rank, self.world_size = episodes, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.episodes, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.episodes, self.world_size))


# ======================================================================================================================
# Distributed training (torchrun)
# ======================================================================================================================


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(device: torch.device | None = None) -> DistributedContext:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the process group (NCCL on GPUs, else gloo).

    Without those variables this is a plain single-process run.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(device=device or _default_device())
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        initialised_here = True
    return DistributedContext(rank, world_size, local_rank, device, initialised_here)


def _default_device() -> torch.device:
    from dpcn_lite.utils import default_device

    return default_device()


class _LossModule(nn.Module):
    """DDP synchronises gradients through ``forward``; this makes ``model.loss`` the forward of a module."""

    def __init__(self, model: FewShotSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, features: Any = None) -> dict:
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


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def make_optimizer(cfg: TrainConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's family), or AdamW (``cfg.optimizer == "adamw"``), at ``cfg.learning_rate``."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    feature_cache: "FeatureCache | None" = None,
) -> TrainResult:
    """Train ``cfg.model`` on fold ``cfg.fold``'s base classes; checkpoint and log into ``run_dir`` (if given).

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` exactly where it stopped (epoch granularity).
    ``on_epoch_end(row)`` is called after each epoch's checkpoint with that epoch's log row. ``feature_cache`` lets
    several runs on the same frozen backbone share one cache (otherwise a fresh one is made when the backbone is frozen).
    """
    started = time.perf_counter()
    ctx = distributed_context(torch.device(device) if isinstance(device, str) else device)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint_path = run_dir / "checkpoint.pt" if run_dir is not None else None
    seed_everything(cfg.seed + ctx.rank)

    # --- model, data, optimiser ---------------------------------------------------------------------------------------
    model = build_model(cfg.model, cfg.model_config()).to(ctx.device)
    use_cache = cfg.feature_cache and not model.backbone.has_trainable_parameters
    train_set = make_episodes(cfg, "train", seed=cfg.seed, episodes=cfg.episodes_per_epoch,
                              augment=cfg.augment and not use_cache)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must divide evenly over {ctx.world_size} processes.")
    per_process_batch = cfg.batch_size // ctx.world_size
    sampler = EpochSampler(len(train_set), ctx.rank, ctx.world_size)
    # Workers are re-created every epoch (not persistent) so they see the dataset's new epoch.
    loader = DataLoader(train_set, batch_size=per_process_batch, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers, drop_last=True, pin_memory=ctx.device.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"episodes_per_epoch is smaller than one batch per process ({per_process_batch}).")
    max_iterations = cfg.epochs * steps_per_epoch

    optimizer = make_optimizer(cfg, trainable_parameters(model))
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_iterations, power=cfg.poly_power)
    use_amp = cfg.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    cache = None
    if use_cache:
        from dpcn_lite.feature_cache import FeatureCache

        cache = feature_cache if feature_cache is not None else FeatureCache(model, dtype=getattr(torch, cfg.cache_dtype))

    # --- resume -------------------------------------------------------------------------------------------------------
    start_epoch, iteration, history = 0, 0, []
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, map_location=ctx.device)
        _check_resumable(state, cfg)
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        scaler.load_state_dict(state["scaler_state"])
        restore_rng_state(state["rng_state"])
        start_epoch, iteration, history = state["epoch"], state["iteration"], list(state["history"])
        if ctx.is_main and run_dir is not None:
            _write_history(run_dir, history)  # drop lines of epochs that were logged but not checkpointed
    elif ctx.is_main and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_history(run_dir, [])
    if ctx.is_main and run_dir is not None:
        atomic_write_text(json.dumps(resolved_config_dict(cfg), indent=2) + "\n", run_dir / "config.json")

    wrapped: nn.Module = _LossModule(model)
    if ctx.world_size > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=True)

    # --- epochs ---------------------------------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        epoch_started = time.perf_counter()
        sums = {"loss": 0.0, "main": 0.0, "reverse": 0.0}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and ctx.is_main))
        for batch in bar:
            batch = _to_device(batch, ctx.device)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=use_amp):
                features = cache.episode_features(batch) if cache is not None else None
                out = wrapped(batch, features)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()  # poly decay, every iteration
            iteration += 1
            for key in sums:
                sums[key] += float(out[key].detach())
            bar.set_postfix(loss=f"{float(out['loss'].detach()):.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        row = {
            "epoch": epoch + 1,
            "iteration": iteration,
            "lr": scheduler.get_last_lr()[0],
            **{key: value / steps_per_epoch for key, value in sums.items()},
            "seconds": time.perf_counter() - epoch_started,
        }
        if ctx.world_size > 1:
            row.update(_average_over_processes({k: row[k] for k in sums}, ctx.device))
        history.append(row)
        if ctx.is_main and run_dir is not None:
            atomic_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "model_name": cfg.model,
                    "model_config": cfg.model_config().to_dict(),
                    "train_config": cfg.to_dict(),
                    "model_state": model.state_dict(),
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": scheduler.state_dict(),
                    "scaler_state": scaler.state_dict(),
                    "rng_state": capture_rng_state(),
                    "epoch": epoch + 1,
                    "iteration": iteration,
                    "history": history,
                },
                checkpoint_path,
            )
            with open(run_dir / "history.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(row) + "\n")
        if on_epoch_end is not None:
            on_epoch_end(row)

    if ctx.initialised_here:
        dist.destroy_process_group()
    model.eval()
    return TrainResult(model, cfg, history, checkpoint_path, time.perf_counter() - started)


def _average_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    tensor = torch.tensor(list(values.values()), device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(values, tensor.tolist()))


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text("".join(json.dumps(row) + "\n" for row in history), run_dir / "history.jsonl")


def _check_resumable(state: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a run with a different model, data or schedule (the numbers would be meaningless)."""
    saved = state.get("train_config", {})
    must_match = ("preset", "dataset", "model", "fold", "shots", "seed", "epochs", "episodes_per_epoch", "batch_size",
                  "base_lr", "lr_scale", "optimizer", "model_overrides")
    different = [k for k in must_match if saved.get(k) != cfg.to_dict().get(k)]
    if different:
        raise ValueError(
            f"Cannot resume: the checkpoint was trained with different {different} "
            f"({ {k: saved.get(k) for k in different} }). Use a new --run-dir, or the same settings."
        )


def resolved_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """What ``config.json`` holds: the training settings, the effective LR and the full model config."""
    return {"train": cfg.to_dict(), "effective_lr": cfg.learning_rate, "model": cfg.model_config().to_dict()}


# ======================================================================================================================
# Loading trained models
# ======================================================================================================================


def build_model_from_checkpoint(checkpoint: dict[str, Any]) -> FewShotSegmenter:
    """Rebuild the model a checkpoint was trained as and load its weights.

    Checkpoints that store only the trainable head (see ``scripts/make_checkpoint.py``) get their frozen pretrained
    backbone from the installed package; any other missing weight is an error.
    """
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"Not a dpcn-lite checkpoint (format={checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT!r}).")
    config = DPCNConfig.from_dict(checkpoint["model_config"])
    model = build_model(checkpoint["model_name"], config)
    missing, unexpected = model.load_state_dict(checkpoint["model_state"], strict=False)
    head_only = checkpoint.get("head_only", False)
    bad_missing = [k for k in missing if not (head_only and k.startswith("backbone."))]
    if bad_missing or unexpected:
        raise RuntimeError(f"Checkpoint does not fit the model: missing {bad_missing[:5]}, unexpected {unexpected[:5]}.")
    return model.eval()


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FewShotSegmenter, TrainConfig]:
    """A model and its training settings from a run folder's ``checkpoint.pt`` (loaded with ``weights_only=True``)."""
    checkpoint = load_checkpoint(path, map_location=device)
    model = build_model_from_checkpoint(checkpoint).to(device)
    return model, TrainConfig.from_dict(checkpoint["train_config"])


def head_only_state(model: FewShotSegmenter) -> dict[str, torch.Tensor]:
    """The weights worth shipping: everything except a frozen, pretrained backbone (rebuilt from the package)."""
    if model.backbone.has_trainable_parameters or not model.config.pretrained:
        return model.state_dict()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


# ======================================================================================================================
# The main job: train, evaluate on the novel classes, write the run folder
# ======================================================================================================================


def run_experiment(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
                   device: torch.device | str | None = None, train_cache: "FeatureCache | None" = None,
                   test_cache: "FeatureCache | None" = None, figures: bool = True) -> dict[str, Any]:
    """Train, evaluate by the protocol and write the whole run folder; returns the metrics (percent).

    ``run_dir`` receives ``config.json``, ``checkpoint.pt``, ``history.jsonl``, ``metrics.json``,
    ``training_curves.png`` and ``predictions.png``. With a frozen backbone, training uses a feature cache and
    evaluation a float32 one (exact); pass ``train_cache``/``test_cache`` to share them between runs.
    """
    from data_utils.folds import class_names

    from dpcn_lite.evaluate import evaluate_seeds, prediction_rows, write_metrics
    from dpcn_lite.viz.training import plot_predictions, plot_training_curves

    run_dir = Path(run_dir)
    result = train(cfg, run_dir, resume=resume, progress=progress, device=device, feature_cache=train_cache)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return {}
    model = result.model
    eval_device = next(model.parameters()).device
    source = make_source(cfg)
    started = time.perf_counter()
    if test_cache is None and cfg.feature_cache and not model.backbone.has_trainable_parameters:
        from dpcn_lite.feature_cache import FeatureCache

        test_cache = FeatureCache(model, dtype=torch.float32)
    metrics = evaluate_seeds(
        model,
        lambda seed: make_episodes(cfg, "test", seed=seed, episodes=cfg.eval_episodes, source=source),
        cfg.eval_seeds,
        batch_size=cfg.eval_batch_size,
        device=eval_device,
        progress=progress,
        amp=cfg.amp,
        num_workers=cfg.num_workers,
        feature_cache=test_cache,
    )
    names = class_names(cfg.dataset)
    metrics = {
        **{k: metrics[k] for k in ("mIoU", "mIoU_std", "FB-IoU", "FB-IoU_std", "per_class_IoU", "episodes", "shots",
                                   "fold")},
        "seed": cfg.seed,
        "eval_seeds": metrics["eval_seeds"],
        "per_class_IoU_by_name": {names[int(c) - 1]: v for c, v in metrics["per_class_IoU"].items()},
        "model": cfg.model,
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "model_overrides": cfg.model_overrides,
        "evaluation": "original-resolution labels, ignore 255 removed, class IoU = sum(I)/sum(U) over episodes",
        "train_seconds": result.seconds,
        "eval_seconds": time.perf_counter() - started,
        "final_train_loss": result.history[-1]["loss"] if result.history else None,
        **{k: metrics[k] for k in ("fg_IoU", "bg_IoU", "units", "per_seed")},
    }
    write_metrics(metrics, run_dir / "metrics.json")
    if not figures:
        return metrics
    title = f"{cfg.model} | {cfg.preset} preset | {cfg.dataset} fold {cfg.fold} | {cfg.shots}-shot"
    plot_training_curves(result.history, run_dir / "training_curves.png", title=title)
    preview = make_episodes(cfg, "test", seed=cfg.eval_seeds[0], episodes=min(4, cfg.eval_episodes), source=source)
    rows = prediction_rows(model, preview, count=4, device=eval_device, class_names=names)
    plot_predictions(rows, run_dir / "predictions.png",
                     title=f"{title} | mIoU {metrics['mIoU']:.1f} over {metrics['episodes']} episodes")
    return metrics
