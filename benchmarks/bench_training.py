"""Training speed of the cpu preset: through the frozen backbone vs from the feature cache.

Same model, same batches (batch 8, 1-shot, synthetic fold 0), same number of optimiser steps, one process. The cached
run's one-off cost (each image through the backbone once) is reported separately, and amortised over an epoch of the
main job. Writes ``benchmarks/results/training.json``.

    python benchmarks/bench_training.py [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from data_utils.episodes import collate_episodes
from dpcn_lite.config import resolve_config
from dpcn_lite.experiment import episodes_for_config
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.model import build_model
from dpcn_lite.results import packaged_benchmark_path

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"


def timed_steps(model, batches, cache=None) -> float:
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    started = time.perf_counter()
    for batch in batches:
        features = cache.episode_features(batch) if cache is not None else None
        loss = model.loss(batch, features=features)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    cfg = resolve_config("cpu")
    episodes = episodes_for_config(cfg, "train", seed=0, episodes=args.steps * cfg.batch_size)
    batches = [collate_episodes([episodes[i * cfg.batch_size + j] for j in range(cfg.batch_size)]) for i in range(args.steps)]
    images = len({i for b in batches for i in b["query_id"]} | {i for b in batches for ids in b["support_ids"] for i in ids})

    torch.manual_seed(0)
    model = build_model("dpcn", cfg.model_config())
    timed_steps(model, batches[:1])  # warm-up
    load_before = os.getloadavg()[0]
    through_backbone = timed_steps(model, batches)

    cache = FeatureCache(model, dtype=torch.float16)
    fill_started = time.perf_counter()
    for batch in batches:
        cache.episode_features(batch)
    fill = time.perf_counter() - fill_started
    from_cache = timed_steps(model, batches, cache)
    load_after = os.getloadavg()[0]

    # The main job: cfg.epochs x (episodes_per_epoch / batch) steps over a pool of about 1,000 training images, each
    # through the backbone once.
    per_image = fill / images
    main_job_steps = cfg.epochs * (cfg.episodes_per_epoch // cfg.batch_size)
    pool_images = len(episodes.source.image_ids("train"))
    amortised = (main_job_steps * from_cache / args.steps + pool_images * per_image) / main_job_steps
    result = {
        "preset": "cpu (EfficientNet-Lite0 frozen, 160 px, C=64), DPCN, 1-shot, batch 8, main + reverse loss",
        "steps": args.steps,
        "distinct_images": images,
        "seconds_per_step_through_backbone": through_backbone / args.steps,
        "seconds_per_step_from_cache": from_cache / args.steps,
        "speedup_same_steps": through_backbone / from_cache,
        "backbone_seconds_per_image_when_filling": per_image,
        "main_job_seconds_per_step_amortised_with_fill": amortised,
        "main_job_speedup_amortised": (through_backbone / args.steps) / amortised,
        "cache_megabytes_for_these_images": cache.nbytes / 2**20,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
                   f"{torch.get_num_threads()}",
        "load_average_before_after": [load_before, load_after],
        "torch": torch.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    # the copy that ships with the package (notebook 09 reads it after a pip install)
    packaged_benchmark_path("training").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':40s}{'s/step':>10s}")
    print(f"{'through the frozen backbone':40s}{result['seconds_per_step_through_backbone']:10.3f}")
    print(f"{'from the feature cache':40s}{result['seconds_per_step_from_cache']:10.3f}")
    print(f"speed-up, same {args.steps} steps: x{result['speedup_same_steps']:.1f}; "
          f"amortised over the main job incl. filling: x{result['main_job_speedup_amortised']:.1f}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
