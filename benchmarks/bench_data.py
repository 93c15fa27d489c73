"""Data benchmarks: episodes per second of the synthetic generator alone and of the full loader with transforms.

    python benchmarks/bench_data.py            # CPU, single process; writes benchmarks/results/data.json
    python benchmarks/bench_data.py --quick    # fewer episodes (smoke run)

Runs with one torch thread by default (as a DataLoader worker does); ``--threads`` changes it.
"generator" renders the K + 1 images of each episode (no cache, no transforms); "train"/"test" are
``EpisodeDataset`` items with the training augmentation or the test resize + pad (rendering included, cache off).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "data.json"
sys.path.insert(0, str(ROOT))

from data_utils.episodes import EpisodeDataset  # noqa: E402
from data_utils.synthetic import SyntheticSource  # noqa: E402
from data_utils.transforms import test_transform, train_transform  # noqa: E402
from dpcn_lite.results import packaged_benchmark_path  # noqa: E402


def episodes_per_second(run_one, n: int) -> float:
    run_one(0)  # warm-up
    start = time.perf_counter()
    for i in range(1, n + 1):
        run_one(i)
    return n / (time.perf_counter() - start)


def bench(size: int, shots: int, n: int) -> dict[str, float]:
    source = SyntheticSource(image_size=size, images_per_class={"train": 12, "test": 12}, cache_size=0)
    results = {}
    for mode in ("generator", "train", "test"):
        split = "test" if mode == "test" else "train"
        transform = {"train": train_transform, "test": test_transform}.get(mode, test_transform)(size)
        dataset = EpisodeDataset(source, fold=0, split=split, shots=shots, episodes=n + 1, seed=0,
                                 transform=transform)
        if mode == "generator":
            def run_one(i: int, ds=dataset) -> None:
                spec = ds.spec(i)
                for image_id in (spec.query_id, *spec.support_ids):
                    source.load(image_id)
        else:
            def run_one(i: int, ds=dataset) -> None:
                ds[i]
        results[mode] = episodes_per_second(run_one, n)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 = what a DataLoader worker uses)")
    args = parser.parse_args()
    # One thread, as in a DataLoader worker: on a busy 2-core machine more threads make small transforms far slower.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for size in (160, 473):
        for shots in (1, 5):
            n = (4 if args.quick else 30) if size == 160 else (2 if args.quick else 6)
            result = bench(size, shots, n)
            rows.append({"image_size": size, "shots": shots, "episodes_timed": n,
                         **{f"{k}_episodes_per_s": round(v, 2) for k, v in result.items()}})
    header = f"{'size':>5} {'shots':>5} {'generator ep/s':>15} {'train ep/s':>11} {'test ep/s':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['image_size']:>5} {r['shots']:>5} {r['generator_episodes_per_s']:>15.2f} "
              f"{r['train_episodes_per_s']:>11.2f} {r['test_episodes_per_s']:>10.2f}")
    payload = {
        "benchmark": "data",
        "what": "synthetic episodes per second, single process, CPU, no cache; generator = rendering the K+1 images",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(),
                    # other work on a shared machine slows every number down: the load says how busy it was
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    if args.out == DEFAULT_OUT:  # the copy that ships with the package (notebook 09 reads it after a pip install)
        packaged_benchmark_path("data").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
