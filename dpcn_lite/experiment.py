"""The main job, one step after the other: config -> data + model -> loop -> evaluation -> run folder.

* :func:`make_source` and :func:`episodes_for_config` turn a :class:`~dpcn_lite.config.TrainConfig` into episodes
  (the by-name counterpart is ``data_utils.episodes_for_dataset``);
* :func:`train` seeds, builds the model (``dpcn_lite.model.build_model``), the training episodes and, for a frozen
  backbone, a feature cache, and hands them to the loop (:func:`dpcn_lite.loop.fit`);
* :func:`evaluate_on_test` scores a model on the fold's novel classes by the protocol (``dpcn_lite.evaluate``);
* :func:`run_experiment` does all of it and writes the run folder (config, checkpoint, history, metrics, figures).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from data_utils.datasets import get_source
from data_utils.episodes import EpisodeDataset
from data_utils.folds import class_names
from data_utils.sources import SegmentationSource
from data_utils.synthetic.benchmarks import get_benchmark
from data_utils.transforms import test_transform, train_transform
from dpcn_lite.backbones import normalization_of
from dpcn_lite.base import FewShotSegmenter
from dpcn_lite.config import TrainConfig
from dpcn_lite.evaluate import evaluate, evaluate_seeds, prediction_rows, write_metrics
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.distributed import distributed_context
from dpcn_lite.checkpoint import build_model_from_checkpoint, load_checkpoint
from dpcn_lite.loop import BEST_CHECKPOINT, TrainResult, fit
from dpcn_lite.model import build_model
from dpcn_lite.run_folder import check_run_folder, claimed_run_folder
from dpcn_lite.utils import seed_everything
from dpcn_lite.viz.training import plot_predictions, plot_training_curves

# ======================================================================================================================
# Config -> data
# ======================================================================================================================


SYNTHETIC_RENDER_SEED = 0
"""The synthetic benchmark's rendering seed: one fixed picture per image id, on every machine."""


_SYNTHETIC_SOURCES: dict[str, SegmentationSource] = {}
"""The synthetic sources of this process by :func:`source_key` (the two most recent): runs one after another share
the rendered images instead of rendering the pool again (the pictures are fixed by the id, so sharing is exact)."""


def make_source(cfg: TrainConfig) -> SegmentationSource:
    """The dataset source; the synthetic benchmark is rendered at the preset's image size and kept in memory."""
    if cfg.dataset == "synthetic":
        key = source_key(cfg)
        if key not in _SYNTHETIC_SOURCES:
            # Rendering an image costs ~20 ms; the whole pool at 160 px is ~350 MB, so keep it all.
            options = ({} if cfg.synthetic_images_per_class is None
                       else {"images_per_class": cfg.synthetic_images_per_class})
            _SYNTHETIC_SOURCES[key] = get_source("synthetic", image_size=cfg.model_config().image_size,
                                                 cache_size=4096, benchmark=cfg.synthetic_benchmark,
                                                 seed=SYNTHETIC_RENDER_SEED, **options)
            while len(_SYNTHETIC_SOURCES) > 2:
                _SYNTHETIC_SOURCES.pop(next(iter(_SYNTHETIC_SOURCES)))
        return _SYNTHETIC_SOURCES[key]
    return get_source(cfg.dataset, root=cfg.data_root)


def source_key(cfg: TrainConfig) -> str:
    """What names the images of ``cfg``'s dataset: a feature cache's key (``FeatureCache.check_key``)."""
    if cfg.dataset == "synthetic":
        benchmark = get_benchmark(cfg.synthetic_benchmark).tag
        size = cfg.synthetic_images_per_class or "default"
        return (f"synthetic:{benchmark}:{cfg.model_config().image_size}px:{size} images per class:"
                f"rendering seed {SYNTHETIC_RENDER_SEED}")
    return f"{cfg.dataset}:{cfg.data_root or 'default root'}:{cfg.model_config().image_size}px"


def episodes_for_config(cfg: TrainConfig, split: str, *, seed: int, episodes: int | None = None,
                        augment: bool = False, source: SegmentationSource | None = None,
                        classes: list[int] | None = None) -> EpisodeDataset:
    """An ``EpisodeDataset`` of fold ``cfg.fold``: ``split="train"`` on the base classes, ``"test"`` on the novel ones.

    Image size and normalisation are the model's. ``episodes=None`` means one pass: for training, PFENet's epoch (each
    training image once, its class drawn among its eligible base classes); for testing, one episode per (image, class)
    pair.
    """
    model_config = cfg.model_config()
    normalization = normalization_of(model_config.backbone)
    size = model_config.image_size
    transform = train_transform(size, normalization) if augment else test_transform(size, normalization)
    source = source if source is not None else make_source(cfg)
    if split == "train" and cfg.train_on_novel:
        classes = source.fold_classes(cfg.fold, "train") + source.fold_classes(cfg.fold, "test")
    return EpisodeDataset(source, fold=cfg.fold, split=split, shots=cfg.shots, episodes=episodes, seed=seed,
                          transform=transform, classes=classes, per_image=episodes is None and split == "train")


SELECTION_SEED = 1_000_003
"""Seed of the held-out base-class episode list (distinct from the test seeds 0, 1, 2, ...)."""


def selection_episodes(cfg: TrainConfig, source: SegmentationSource | None = None) -> EpisodeDataset:
    """Held-out episodes for choosing the best epoch: the test split's images, but the fold's *base* classes (those
    with enough test images), so the novel classes' labels are never seen. Fixed list, ``cfg.selection_episodes``."""
    source = source if source is not None else make_source(cfg)
    index = source.class_index("test")
    base = [c for c in source.fold_classes(cfg.fold, "train") if len(index.get(c, [])) > cfg.shots]
    return episodes_for_config(cfg, "test", seed=SELECTION_SEED, episodes=max(1, cfg.selection_episodes),
                               source=source, classes=base)


def make_selector(cfg: TrainConfig, model: FewShotSegmenter) -> Callable[[FewShotSegmenter], float]:
    """``selector(model) -> mIoU (percent)`` on :func:`selection_episodes`, for ``fit``'s best-epoch selection."""
    episodes = selection_episodes(cfg)
    cache = None if model.backbone.has_trainable_parameters else \
        FeatureCache(model, dtype=torch.float32, key=f"{source_key(cfg)} | selection")

    def selector(current: FewShotSegmenter) -> float:
        return 100.0 * evaluate(current, episodes, batch_size=cfg.eval_batch_size, progress=False,
                                feature_cache=cache)["mIoU"]
    return selector


# ======================================================================================================================
# Config -> model -> loop
# ======================================================================================================================


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    feature_cache: FeatureCache | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on fold ``cfg.fold``'s base classes; checkpoint and log into ``run_dir`` (if given).

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` exactly where it stopped (epoch granularity).
    ``on_epoch_end(row)`` is called after each epoch's checkpoint with that epoch's log row. ``feature_cache`` lets
    several runs on the same frozen backbone share one cache (otherwise a fresh one is made when the backbone is frozen).
    """
    ctx = distributed_context(device)  # joins torchrun's process group, unless the caller already did
    try:
        seed_everything(cfg.seed + ctx.rank)  # before the model: its initial weights come from this seed
        model = build_model(cfg.model, cfg.model_config()).to(ctx.device)
        use_cache = cfg.feature_cache and not model.backbone.has_trainable_parameters
        train_set = episodes_for_config(cfg, "train", seed=cfg.seed, episodes=cfg.episodes_per_epoch,
                                        augment=cfg.augment and not use_cache)
        cache = None
        if use_cache:
            key, dtype = source_key(cfg), getattr(torch, cfg.cache_dtype)
            cache = feature_cache.check_key(key, model, dtype) if feature_cache is not None else \
                FeatureCache(model, dtype=dtype, key=key)
        selector = make_selector(cfg, model) if cfg.selection_episodes and ctx.is_main else None
        return fit(cfg, model, train_set, ctx, run_dir, resume=resume, progress=progress, on_epoch_end=on_epoch_end,
                   feature_cache=cache, selector=selector)
    finally:
        ctx.close()


# ======================================================================================================================
# Evaluation and the run folder
# ======================================================================================================================


def evaluate_on_test(model: FewShotSegmenter, cfg: TrainConfig, *, episodes: int | None = None,
                     seeds: list[int] | tuple[int, ...] | None = None, source: SegmentationSource | None = None,
                     **evaluate_options: Any) -> dict[str, Any]:
    """The protocol on fold ``cfg.fold``'s novel classes: one fixed episode list per seed, mean ± std in percent.

    ``episodes`` and ``seeds`` default to the config's; ``evaluate_options`` go to ``dpcn_lite.evaluate.evaluate``.
    """
    source = source if source is not None else make_source(cfg)
    count = episodes or cfg.eval_episodes
    evaluate_options.setdefault("scales", cfg.test_scales)
    return evaluate_seeds(model, lambda seed: episodes_for_config(cfg, "test", seed=seed, episodes=count, source=source),
                          seeds or cfg.eval_seeds, batch_size=cfg.eval_batch_size, **evaluate_options)


def run_experiment(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
                   device: torch.device | str | None = None, train_cache: FeatureCache | None = None,
                   test_cache: FeatureCache | None = None, figures: bool = True) -> dict[str, Any]:
    """Train, evaluate by the protocol and write the whole run folder; returns the metrics (percent).

    ``run_dir`` receives ``config.json``, ``checkpoint.pt``, ``history.jsonl``, ``metrics.json``,
    ``training_curves.png`` and ``predictions.png``. With a frozen backbone, training uses a feature cache and
    evaluation a float32 one (exact); pass ``train_cache``/``test_cache`` to share them between runs. The folder is
    checked and claimed first (``dpcn_lite.run_folder``): a foreign, busy or missing run stops before any work.

    Under ``torchrun`` every process trains; then process 0 alone evaluates and writes while the others wait, and
    only process 0 returns the metrics (the others return ``{}``).
    """
    ctx = distributed_context(device)  # joined here, so that the process group outlives training
    try:
        if not ctx.is_main:
            train(cfg, run_dir, resume=resume, progress=False, device=device, feature_cache=train_cache)
            ctx.barrier()  # wait while process 0 evaluates and writes the run folder
            return {}
        run_dir = check_run_folder(run_dir, resume=resume)
        with claimed_run_folder(run_dir, resume=resume):
            metrics = _run_experiment(cfg, run_dir, resume=resume, progress=progress, device=device,
                                      train_cache=train_cache, test_cache=test_cache, figures=figures)
        ctx.barrier()
        return metrics
    finally:
        ctx.close()


def _run_experiment(cfg: TrainConfig, run_dir: Path, *, resume: bool, progress: bool,
                    device: torch.device | str | None, train_cache: FeatureCache | None,
                    test_cache: FeatureCache | None, figures: bool) -> dict[str, Any]:
    """:func:`run_experiment` in its claimed folder."""
    result = train(cfg, run_dir, resume=resume, progress=progress, device=device, feature_cache=train_cache)
    model = result.model
    eval_device = next(model.parameters()).device
    source = make_source(cfg)
    started = time.perf_counter()
    if test_cache is None and cfg.feature_cache and not model.backbone.has_trainable_parameters:
        test_cache = FeatureCache(model, dtype=torch.float32, key=source_key(cfg))
    elif test_cache is not None:
        test_cache.check_key(source_key(cfg), model, torch.float32)
    metrics = evaluate_on_test(model, cfg, source=source, device=eval_device, progress=progress, amp=cfg.amp,
                               num_workers=cfg.num_workers, feature_cache=test_cache)
    names = class_names(cfg.dataset)
    metrics = {
        **{k: metrics[k] for k in ("mIoU", "mIoU_std", "FB-IoU", "FB-IoU_std", "per_class_IoU",
                                   "classes_without_episodes", "episodes", "shots", "fold")},
        "seed": cfg.seed,
        "eval_seeds": metrics["eval_seeds"],
        "per_class_IoU_by_name": {names[int(c) - 1]: v for c, v in metrics["per_class_IoU"].items()},
        "model": cfg.model,
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        **({"benchmark": source.benchmark.tag} if cfg.dataset == "synthetic" else {}),
        "model_overrides": cfg.model_overrides,
        "evaluation": "original-resolution labels, ignore 255 removed, class IoU = sum(I)/sum(U) over episodes",
        "test_scales": list(cfg.test_scales),
        "train_seconds": result.seconds,
        "eval_seconds": time.perf_counter() - started,
        "final_train_loss": result.history[-1]["loss"] if result.history else None,
        "processes": (result.run_info or {}).get("world_size", 1),
        **({"weights_checksum_per_process": result.run_info["weights_checksum_per_process"]}
           if result.run_info and "weights_checksum_per_process" in result.run_info else {}),
        **{k: metrics[k] for k in ("fg_IoU", "bg_IoU", "units", "per_seed", "hole_fill", "body_fill") if k in metrics},
    }
    best_path = run_dir / BEST_CHECKPOINT
    if cfg.selection_episodes and best_path.is_file():
        best = load_checkpoint(best_path)
        best_model = build_model_from_checkpoint(best).to(eval_device)
        scores = evaluate_on_test(best_model, cfg, source=source, device=eval_device, progress=progress, amp=cfg.amp,
                                  num_workers=cfg.num_workers, feature_cache=test_cache)
        metrics["best_epoch"] = {"epoch": best["epoch"], "selection_mIoU": best["selection_mIoU"],
                                 "selected_on": f"{cfg.selection_episodes} held-out base-class episodes",
                                 **{k: scores[k] for k in ("mIoU", "mIoU_std", "FB-IoU", "FB-IoU_std", "per_class_IoU",
                                                           "classes_without_episodes")}}
    write_metrics(metrics, run_dir / "metrics.json")
    if not figures:
        return metrics
    title = f"{cfg.model} | {cfg.preset} preset | {cfg.dataset} fold {cfg.fold} | {cfg.shots}-shot"
    plot_training_curves(result.history, run_dir / "training_curves.png", title=title)
    preview = episodes_for_config(cfg, "test", seed=cfg.eval_seeds[0], episodes=min(4, cfg.eval_episodes),
                                  source=source)
    rows = prediction_rows(model, preview, count=4, device=eval_device, class_names=names)
    plot_predictions(rows, run_dir / "predictions.png",
                     title=f"{title} | mIoU {metrics['mIoU']:.1f} over {metrics['episodes']} episodes")
    return metrics
