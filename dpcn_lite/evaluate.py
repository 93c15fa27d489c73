"""Evaluation by the field's protocol (notes §4.2) and the files a run leaves behind.

For each of the fold's test episodes (1,000 seeded episodes by default, the same list on every machine):

1. the model predicts ``2×H×W`` logits for the padded ``H×W`` query (with multi-scale testing, ``scales``: the
   average of the logits predicted for the query resized by each scale, each upsampled to ``H×W``; the supports stay
   as they are);
2. the padding is cropped (``query_valid_hw``), the logits are upsampled bilinearly to the label's *original* size and
   the larger logit wins (:func:`dpcn_lite.metrics.prediction_at_original_size`);
3. foreground/background intersections and unions are counted with ignore (255) pixels removed, and accumulated per
   class as ΣI/ΣU (:class:`dpcn_lite.metrics.FewShotIoU`).

mIoU is the mean class IoU over the fold's novel classes; FB-IoU the mean of foreground and background IoU over all
episodes. On the synthetic benchmark the source knows each target's hole pixels, and ``hole_fill`` /
``body_fill`` (:class:`dpcn_lite.metrics.StructureFill`, fractions) say how much of the holes and of the object itself
a model predicts as foreground. Several seeds give several episode lists, reported as mean ± std. Numbers in ``metrics.json`` are percent,
like the tables of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from data_utils.episodes import collate_episodes, move_batch
from dpcn_lite.base import FewShotSegmenter
from data_utils.errors import DataError
from data_utils.files import atomic_write_text, strict_json
from dpcn_lite.metrics import FewShotIoU, StructureFill, episode_counts, mean_and_std, prediction_at_original_size
from dpcn_lite.model_config import check_test_scales
from dpcn_lite.viz import display_image


def rescaled(images: torch.Tensor, scale: float) -> torch.Tensor:
    """``images`` N x 3 x H x W resized by ``scale`` (bilinear, align_corners=True like the logits' upsampling)."""
    if scale == 1.0:
        return images
    size = [max(1, round(side * scale)) for side in images.shape[-2:]]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=True)


def episode_logits(model: FewShotSegmenter, batch: dict[str, Any], device: torch.device,
                   scales: tuple[float, ...] = (1.0,), feature_cache=None) -> torch.Tensor:
    """B x 2 x H x W logits on the padded input grid of a collated test batch.

    ``scales == (1.0,)`` is plain testing. Otherwise the query is resized by each scale, the model predicts from the
    same (unscaled) supports, each prediction is upsampled to H x W, and the logits are averaged over the scales. The
    supports' features are computed once (or come from the feature cache); so is the query's at scale 1."""
    query, masks = batch["query_image"].to(device), batch["support_masks"].to(device)
    image_hw = tuple(query.shape[-2:])
    if feature_cache is not None:
        unscaled_query, support = feature_cache.episode_features(move_batch(batch, device))
    elif scales == (1.0,):
        return model(query, batch["support_images"].to(device), masks).logits
    else:
        unscaled_query = None
        support = model.extract_support_features(batch["support_images"].to(device),
                                                 high=not model.config.mask_support_high)
    total = None
    for scale in scales:
        query_features = (unscaled_query if scale == 1.0 and unscaled_query is not None
                          else model.extract_features(rescaled(query, scale)))
        logits = model.forward_features(query_features, support, masks, image_hw).logits
        total = logits if total is None else total + logits
    return total / len(scales)


@torch.no_grad()
def evaluate(
    model: FewShotSegmenter,
    episodes,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    progress: bool = True,
    amp: bool = True,
    num_workers: int = 0,
    feature_cache=None,
    scales: Sequence[float] = (1.0,),
) -> dict[str, Any]:
    """Score ``model`` on a test ``EpisodeDataset``; returns fractions (mIoU, FB-IoU, per-class IoU, counts).

    The episodes must carry ``query_label_original`` and ``query_valid_hw`` (test-split episodes do). With a
    frozen backbone, a :class:`~dpcn_lite.feature_cache.FeatureCache` (float32 = identical numbers) runs the
    backbone once per test image instead of once per episode. ``scales`` turns on multi-scale testing (the paper
    tests at several scales, as most few-shot methods do, without naming them): each in (0, 4], e.g.
    ``(0.75, 1.0, 1.25)``; the default ``(1.0,)`` is single-scale testing, computed exactly as before the option
    existed (:func:`episode_logits`).
    """
    scales = check_test_scales(scales)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    metric = FewShotIoU(episodes.classes)
    structure = StructureFill()
    holes_of = getattr(getattr(episodes, "source", None), "holes", None)  # the synthetic benchmark knows them
    loader = DataLoader(episodes, batch_size=batch_size, shuffle=False, collate_fn=collate_episodes, num_workers=num_workers)
    use_amp = amp and device.type == "cuda"
    try:
        for batch in tqdm(loader, desc="evaluating", leave=False, disable=not progress):
            if "query_label_original" not in batch:
                raise ValueError("Evaluation needs test-split episodes (with query_label_original and query_valid_hw).")
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = episode_logits(model, batch, device, scales, feature_cache)
            for i, label in enumerate(batch["query_label_original"]):
                prediction = prediction_at_original_size(logits[i], batch["query_valid_hw"][i], label.shape[-2:])
                metric.update(prediction.cpu(), label, int(batch["class_id"][i]))
                if holes_of is not None:
                    holes = holes_of(batch["query_id"][i], int(batch["class_id"][i]))
                    structure.update(prediction.cpu(), label, torch.from_numpy(holes))
    finally:
        model.train(was_training)
    result = metric.compute()
    if structure.body_shares:
        result.update(structure.compute())
    result["seed"] = episodes.seed
    result["shots"] = episodes.shots
    result["fold"] = episodes.fold
    return result


class ForeignSupports(Dataset):
    """The same test episodes, each given the support set of the next episode of *another* class.

    A control for "does the model use its support at all?": the query and its label are unchanged, but the supports
    show a different class, so a model that reads the support should now find (almost) nothing, while a support-blind
    model ("segment the salient object") would score as before. ``evaluate(model, ForeignSupports(episodes))``.
    """

    def __init__(self, episodes) -> None:
        self.episodes = episodes
        self.classes, self.seed, self.shots, self.fold = episodes.classes, episodes.seed, episodes.shots, episodes.fold
        self.source = episodes.source
        specs = episodes.episode_list()
        n = len(specs)
        if len({s.class_id for s in specs}) < 2:
            raise ValueError("ForeignSupports needs episodes of at least two classes.")
        self.partner = [next(j % n for j in range(i + 1, i + n) if specs[j % n].class_id != specs[i].class_id)
                        for i in range(n)]

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode = dict(self.episodes[index])
        other = self.episodes[self.partner[index]]
        for key in ("support_images", "support_masks", "support_ids"):
            episode[key] = other[key]
        return episode


def evaluate_seeds(
    model: FewShotSegmenter,
    make_test_episodes,
    seeds: Sequence[int],
    **evaluate_options: Any,
) -> dict[str, Any]:
    """Evaluate on one episode list per seed (``make_test_episodes(seed)``) and report mean ± std over seeds.

    ``evaluate_options`` go to :func:`evaluate` for every seed (``batch_size``, ``feature_cache``, ``scales``, ...).

    Returns the per-seed results and, at the top level, the mean (and sample std) of mIoU, FB-IoU and each class IoU,
    all in percent.
    """
    if not seeds:
        raise ValueError("Give at least one evaluation seed.")
    runs = [evaluate(model, make_test_episodes(int(seed)), **evaluate_options) for seed in seeds]
    return summarise_runs(runs)


def _scored(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def summarise_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Percent numbers, mean ± std over the runs (one per evaluation seed), all on one class set.

    A class that has no counted pixels in some seed's episodes (a short evaluation can miss a class) is left out of
    every seed's mIoU, so that all seeds average the same classes, and is named in ``classes_without_episodes``.
    """
    classes = list(runs[0]["per_class_IoU"])
    missing = [c for c in classes if not all(_scored(r["per_class_IoU"][c]) for r in runs)]
    common = [c for c in classes if c not in missing]
    if not common:
        raise DataError(f"No class of the fold has scored episodes in every evaluation seed ({len(runs)} seeds, "
                        f"{runs[0]['episodes']} episodes each); evaluate on more --episodes.")
    seed_mious = [float(np.mean([r["per_class_IoU"][c] for c in common])) for r in runs]

    def pct(values: list[float]) -> tuple[float, float]:
        mean, std = mean_and_std([100.0 * v for v in values])
        return mean, std

    miou, miou_std = pct(seed_mious)
    fbiou, fbiou_std = pct([r["FB-IoU"] for r in runs])
    per_class = {c: pct([r["per_class_IoU"][c] for r in runs])[0] if c in common else None for c in classes}
    return {
        "mIoU": miou,
        "mIoU_std": miou_std,
        "FB-IoU": fbiou,
        "FB-IoU_std": fbiou_std,
        "per_class_IoU": per_class,
        "classes_without_episodes": [int(c) for c in missing],
        "fg_IoU": 100.0 * sum(r["fg_IoU"] for r in runs) / len(runs),
        "bg_IoU": 100.0 * sum(r["bg_IoU"] for r in runs) / len(runs),
        "episodes": runs[0]["episodes"],
        "eval_seeds": [r["seed"] for r in runs],
        "shots": runs[0]["shots"],
        "fold": runs[0]["fold"],
        "units": "percent",
        **({key: float(np.mean([r[key] for r in runs])) if runs[0][key] is not None else None
            for key in ("hole_fill", "body_fill")} if "hole_fill" in runs[0] else {}),
        "per_seed": [
            {"seed": r["seed"], "mIoU": 100.0 * m, "FB-IoU": 100.0 * r["FB-IoU"],
             "per_class_IoU": {c: 100.0 * v if _scored(v) else None for c, v in r["per_class_IoU"].items()},
             "episodes_per_class": r["episodes_per_class"]}
            for r, m in zip(runs, seed_mious)
        ],
    }


@torch.no_grad()
def prediction_rows(model: FewShotSegmenter, episodes, count: int = 4, device: torch.device | str = "cpu",
                    class_names: Sequence[str] | None = None) -> list[dict]:
    """The first ``count`` episodes as rows for :func:`dpcn_lite.viz.training.plot_predictions`."""
    model.eval()
    mean, std = model.normalization
    rows = []
    for index in range(min(count, len(episodes))):
        episode = episodes[index]
        logits = model(episode["query_image"][None].to(device), episode["support_images"][None].to(device),
                       episode["support_masks"][None].to(device)).logits[0].cpu()
        prediction = logits.argmax(0)
        query_mask = episode["query_mask"]
        # Episode IoU on the model's input grid (padding is 255 there, so it is ignored).
        iou = episode_counts(prediction, query_mask).fg_iou
        name = class_names[episode["class_id"] - 1] if class_names else f"class {episode['class_id']}"
        rows.append({
            "support_image": display_image(episode["support_images"][0], mean, std),
            "support_mask": episode["support_masks"][0].numpy(),
            "query_image": display_image(episode["query_image"], mean, std),
            "query_mask": query_mask.numpy(),
            "prediction": prediction.numpy(),
            "caption": f"{name}\nIoU {100 * iou:.1f}%" if not math.isnan(iou) else name,
        })
    return rows


def write_metrics(metrics: dict[str, Any], path: str | Path) -> Path:
    """``metrics.json``, written atomically, as valid JSON (NaN becomes ``null``)."""
    return atomic_write_text(strict_json(metrics, indent=2) + "\n", path)
