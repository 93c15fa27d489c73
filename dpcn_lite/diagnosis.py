"""Is a benchmark learnable as few-shot segmentation, and does a recipe generalise? The numbers to judge both by.

A trained head can score well on novel classes only if (a) the frozen features let one support find its class in a
query, and (b) training teaches *matching* rather than memorising the base classes. :func:`diagnose` measures both
on one fold (``docs/diagnosis.md`` reads the table):

* ``raw_auc_mid`` / ``raw_auc_high``: how well cos(query pixel, support foreground prototype) on the *raw* frozen
  features ranks target above non-target pixels (ROC AUC over novel-class test episodes; 0.5 = chance);
* ``untrained_rule``: PANet's rule on the raw mid-level features, no training (nearest of the support's foreground and
  background prototypes): the floor a trained model must beat on novel classes;
* ``colour_rule``: the same rule on raw pixel colours, no network: a benchmark where this scores well is a colour
  lookup, not a segmentation task;
* per trained model: ``fit`` (base classes on training images), ``base`` (base classes on the unseen test images),
  ``novel`` (the protocol's mIoU), ``foreign`` (novel, with another class's supports), and ``oracle`` (the same
  head trained with the novel classes' own labels too: the upper bound for these features and this budget).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from data_utils.episodes import EpisodeDataset, collate_episodes
from dpcn_lite.base import FewShotSegmenter, SegmenterOutput
from dpcn_lite.backbones import BackboneFeatures
from dpcn_lite.config import TrainConfig
from dpcn_lite.evaluate import ForeignSupports, evaluate
from dpcn_lite.experiment import episodes_for_config, make_source, source_key, train
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.modules.decoder import upsample_logits
from dpcn_lite.modules.prototypes import masked_average_pooling, resize_support_mask


def _two_prototype_logits(query: torch.Tensor, support: torch.Tensor, masks: torch.Tensor, eps: float) -> torch.Tensor:
    """cos(query pixel, [background prototype, foreground prototype]) from K supports: B x 2 x h x w."""
    foreground = masked_average_pooling(support, masks, eps).mean(dim=1)
    background = masked_average_pooling(support, 1.0 - masks, eps).mean(dim=1)
    prototypes = F.normalize(torch.stack([background, foreground], dim=1), dim=2)
    return torch.einsum("bchw,bkc->bkhw", F.normalize(query, dim=1), prototypes)


class UntrainedPrototypeRule(FewShotSegmenter):
    """PANet's matching rule on the raw frozen mid-level features: no parameter is trained, nothing is learned."""

    def forward_features(self, query_features: BackboneFeatures, support_features: BackboneFeatures,
                         support_masks: torch.Tensor, image_hw: tuple[int, int],
                         return_intermediates: bool = False) -> SegmenterOutput:
        masks = resize_support_mask(support_masks, tuple(support_features.mid.shape[-2:]))
        logits = _two_prototype_logits(query_features.mid, support_features.mid, masks, self.config.map_eps)
        return SegmenterOutput(upsample_logits(logits, image_hw), {})


class ColourRule(nn.Module):
    """The same rule on raw pixel colours (no network): each query pixel takes the nearer of the support's mean
    foreground and mean background colour. It reads the normalised images; with one scale for all three channels
    (the cpu preset's Lite0 normalisation) these distances are RGB distances up to a constant factor."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, query_image: torch.Tensor, support_images: torch.Tensor,
                support_masks: torch.Tensor) -> SegmenterOutput:
        masks = (support_masks == 1).float()[:, :, None]  # B x K x 1 x H x W
        background = (support_masks == 0).float()[:, :, None]

        def mean_colour(weights: torch.Tensor) -> torch.Tensor:
            return (support_images * weights).sum(dim=(1, 3, 4)) / weights.sum(dim=(1, 3, 4)).clamp(min=1.0)

        foreground_colour, background_colour = mean_colour(masks), mean_colour(background)  # B x 3
        distance_fg = (query_image - foreground_colour[..., None, None]).pow(2).sum(dim=1)
        distance_bg = (query_image - background_colour[..., None, None]).pow(2).sum(dim=1)
        return SegmenterOutput(torch.stack([-distance_bg, -distance_fg], dim=1), {})


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(a random positive outscores a random negative), ties counting half."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("roc_auc needs both positive and negative pixels.")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@torch.no_grad()
def raw_feature_auc(cache: FeatureCache, episodes: EpisodeDataset, level: str = "mid", batch_size: int = 16,
                    progress: bool = False) -> float:
    """AUC of cos(query pixel, support foreground prototype) on raw ``level`` features, target vs other valid pixels.

    The cosine map is upsampled to the label's size; every 7th valid pixel is kept (the AUC needs no more).
    """
    scores, labels = [], []
    loader = torch.utils.data.DataLoader(episodes, batch_size=batch_size, collate_fn=collate_episodes)
    for batch in tqdm(loader, desc=f"raw {level} AUC", leave=False, disable=not progress):
        features = cache.episode_features(batch)
        query, support = getattr(features.query, level), getattr(features.support, level)
        masks = resize_support_mask(batch["support_masks"], tuple(support.shape[-2:]))
        cosine = _two_prototype_logits(query, support, masks, 5e-4)[:, 1:2]
        cosine = F.interpolate(cosine, size=tuple(batch["query_mask"].shape[-2:]), mode="bilinear",
                               align_corners=False)[:, 0]
        valid = batch["query_mask"] != 255
        scores.append(cosine[valid].numpy()[::7])
        labels.append((batch["query_mask"][valid] == 1).numpy()[::7])
    return roc_auc(np.concatenate(labels), np.concatenate(scores))


def _percent(result: dict[str, Any]) -> dict[str, Any]:
    row = {"mIoU": 100 * result["mIoU"], "FB-IoU": 100 * result["FB-IoU"],
           "per_class": {c: round(100 * v, 1) for c, v in result["per_class_IoU"].items()}}
    for key in ("hole_fill", "body_fill"):
        if result.get(key) is not None:
            row[key] = result[key]
    return row


def diagnose(cfg: TrainConfig, models: tuple[str, ...] = ("prototype", "dpcn"), *,
             oracle: bool | tuple[str, ...] = True, seeds: tuple[int, ...] | None = None, novel_only: bool = False,
             episodes: int | None = None, base_episodes: int = 300, fit_episodes: int = 200, progress: bool = True,
             log: Callable[[str], None] = print,
             on_report: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The diagnosis of ``cfg``'s benchmark and recipe on fold ``cfg.fold`` (see the module docstring); percent.

    One report per training seed (``seeds``, default ``cfg.seed``); the runs share their feature caches.
    ``oracle``: for every model, for none, or for the models named. ``novel_only`` skips fit, base and foreign.
    ``on_report(report)`` is called as each seed finishes (to log it before the next one starts).
    """
    started = time.perf_counter()
    source = make_source(cfg)
    count = episodes or cfg.eval_episodes
    novel = episodes_for_config(cfg, "test", seed=0, episodes=count, source=source)
    base_classes = [c for c in range(1, 21) if c not in novel.classes] if cfg.dataset == "synthetic" else \
        source.fold_classes(cfg.fold, "train")
    checks = [("novel", novel)]
    if not novel_only:
        base = EpisodeDataset(source, cfg.fold, "test", cfg.shots, base_episodes, seed=0, transform=novel.transform,
                              classes=base_classes)
        fit = EpisodeDataset(source, cfg.fold, "train", cfg.shots, fit_episodes, seed=0, transform=novel.transform,
                             classes=base_classes, fixed=True)
        checks = [("fit", fit), ("base", base), ("novel", novel), ("foreign", ForeignSupports(novel))]
    shared: dict[str, Any] = {"dataset": cfg.dataset, "fold": cfg.fold, "shots": cfg.shots, "episodes": count}
    if cfg.dataset == "synthetic":
        shared["benchmark"] = source.benchmark.tag
    rule = UntrainedPrototypeRule(cfg.model_config()).eval()
    # Every model here shares the same frozen backbone, so one cache serves all evaluations and one all trainings.
    cache = FeatureCache(rule, dtype=torch.float32, key=source_key(cfg))
    train_cache = FeatureCache(rule, dtype=getattr(torch, cfg.cache_dtype), key=source_key(cfg))
    shared["raw_auc_mid"] = raw_feature_auc(cache, novel, "mid", progress=progress)
    shared["raw_auc_high"] = raw_feature_auc(cache, novel, "high", progress=progress)
    shared["untrained_rule"] = _percent(evaluate(rule, novel, feature_cache=cache, progress=progress))
    shared["colour_rule"] = _percent(evaluate(ColourRule(), novel, device="cpu", progress=progress))
    log(f"raw AUC mid {shared['raw_auc_mid']:.3f} high {shared['raw_auc_high']:.3f} | untrained rule "
        f"{shared['untrained_rule']['mIoU']:.1f} | colour rule {shared['colour_rule']['mIoU']:.1f}")
    oracles = models if oracle is True else (oracle or ())
    reports = []
    for seed in seeds if seeds is not None else (cfg.seed,):
        report = {**shared, "train": dataclasses.replace(cfg, seed=seed).to_dict()}
        for name in models:
            run = dataclasses.replace(cfg, model=name, seed=seed)
            model = train(run, progress=progress, feature_cache=train_cache).model.eval()
            row = {key: _percent(evaluate(model, data, feature_cache=cache, progress=progress)) for key, data in checks}
            if name in oracles:
                upper = train(dataclasses.replace(run, train_on_novel=True), progress=progress,
                              feature_cache=train_cache).model.eval()
                row["oracle"] = _percent(evaluate(upper, novel, feature_cache=cache, progress=progress))
            report[name] = row
            log(f"seed {seed} {name}: " + " | ".join(f"{key} {value['mIoU']:.1f}" for key, value in row.items()))
        report["minutes"] = (time.perf_counter() - started) / 60
        reports.append(report)
        if on_report is not None:
            on_report(report)
    return reports
