"""Model benchmarks: SAM formulations, grouped vs looped DCM, training-step cost per preset, parameter counts.

    python benchmarks/bench_model.py            # CPU sections (a few minutes on 2 cores), writes results/model.json
    python benchmarks/bench_model.py --gpu      # adds the paper preset's training step at batch 8, fp32 and AMP
    python benchmarks/bench_model.py --quick    # small sizes only (smoke run)

Ratios are measured within one run, so they compare like with like on whatever machine runs this. Timings are the
best of N runs (the minimum is the least disturbed by other processes on a shared CPU); training steps also report
the median. The machine's load average at the start is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "model.json"
sys.path.insert(0, str(ROOT))

from dpcn_lite.config import get_preset  # noqa: E402
from dpcn_lite.model import DPCN  # noqa: E402
from dpcn_lite.modules.dcm import dynamic_depthwise_conv, dynamic_depthwise_conv_loop  # noqa: E402
from dpcn_lite.modules.sam import activation_maps  # noqa: E402
from dpcn_lite.results import packaged_benchmark_path  # noqa: E402

WINDOWS = ((5, 1), (3, 3), (1, 5))


def timed_runs(fn: Callable[[], object], repeats: int, warmup: int = 1, cuda: bool = False) -> list[float]:
    """Sorted wall times of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1, cuda: bool = False) -> float:
    """Best (minimum) wall time of ``fn`` in seconds."""
    return timed_runs(fn, repeats, warmup, cuda)[0]


class single_thread:
    """Run micro-benchmarks on one thread: on a shared CPU, multi-threaded kernels stall whenever another process
    takes a core, which makes small timings meaningless; one thread keeps the ratios stable."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.threads)


def bench_sam(side: int, channels: int, repeats: int, slow_repeats: int) -> dict:
    """The three exact SAM formulations on one support/query pair (all three windows, forward only)."""
    torch.manual_seed(0)
    query = torch.randn(1, channels, side, side)
    support = torch.randn(1, channels, side, side)
    mask = (torch.rand(1, 1, side, side) > 0.5).float()
    row = {"grid": f"{side}x{side}", "channels": channels, "threads": 1}
    with torch.no_grad(), single_thread():
        for method, reps, warm in (("shifted", repeats, 1), ("unfold", slow_repeats, 0), ("loop", slow_repeats, 0)):
            row[f"{method}_s"] = timed(lambda m=method: activation_maps(query, support, mask, WINDOWS, m), reps, warm)
    row["unfold_over_shifted"] = row["unfold_s"] / row["shifted_s"]
    row["loop_over_shifted"] = row["loop_s"] / row["shifted_s"]
    return row


def bench_dcm(batch: int, channels: int, side: int, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    features = torch.randn(batch, channels, side, side)
    row = {"batch": batch, "channels": channels, "grid": f"{side}x{side}", "kernel_size": size, "threads": 1}
    with torch.no_grad(), single_thread():
        for name, shape in (("v", (size, 1)), ("h", (1, size)), ("s", (size, size))):
            kernels = torch.randn(batch, channels, *shape)
            grouped = timed(lambda: dynamic_depthwise_conv(features, kernels), repeats, warmup=3)
            loop = timed(lambda: dynamic_depthwise_conv_loop(features, kernels), repeats, warmup=3)
            row[f"{name}_grouped_ms"] = grouped * 1e3
            row[f"{name}_loop_ms"] = loop * 1e3
            row[f"{name}_loop_over_grouped"] = loop / grouped
    return row


def episode(batch: int, shots: int, size: int, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(batch, shots, size, size, dtype=torch.long)
    masks[..., size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    batch_dict = {
        "query_image": torch.randn(batch, 3, size, size, generator=g),
        "support_images": torch.randn(batch, shots, 3, size, size, generator=g),
        "support_masks": masks,
        "query_mask": masks[:, 0].clone(),
    }
    return {k: v.to(device) for k, v in batch_dict.items()}


def bench_train_step(preset: str, batch: int, size: int, repeats: int, warmup: int, cached: bool = False,
                     **overrides) -> dict:
    """Forward + backward (main + reverse loss) per episode on the CPU."""
    torch.manual_seed(0)
    model = DPCN(get_preset(preset, **overrides)).train()
    data = episode(batch, 1, size)
    features = None
    if cached:
        with torch.no_grad():
            features = model.extract_episode_features(data["query_image"], data["support_images"])

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(data, features=features)["loss"].backward()

    runs = timed_runs(step, repeats, warmup)
    counts = {f"params_{k}": v for k, v in model.parameter_counts().items()}
    return {"preset": preset, "batch": batch, "image_size": size, "cached_features": cached, "step_s": runs[0],
            "step_median_s": runs[len(runs) // 2], "per_episode_s": runs[0] / batch, **counts}


def bench_gpu(batch: int = 8, size: int = 473, repeats: int = 5) -> list[dict]:
    """Paper preset, batch 8: training step time and peak memory, fp32 and AMP (fp16 autocast + GradScaler)."""
    device = torch.device("cuda")
    rows = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = DPCN(get_preset("paper", pretrained=False)).to(device).train()
        optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.005, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        data = episode(batch, 1, size, "cuda")

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = model.loss(data)["loss"]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        runs = timed_runs(step, repeats, warmup=1, cuda=True)
        rows.append({"precision": "amp-fp16" if amp else "fp32", "batch": batch, "image_size": size,
                     "step_s": runs[len(runs) // 2], "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                     "device": torch.cuda.get_device_name()})
        del model, optimizer
        torch.cuda.empty_cache()
    return rows


def print_table(title: str, rows: list[dict], keys: list[str]) -> None:
    print(f"\n## {title}")
    print(" | ".join(keys))
    for row in rows:
        cells = []
        for key in keys:
            value = row.get(key, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="also time the paper preset on CUDA (fp32 and AMP)")
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                     "processor": platform.processor() or "unknown",
                     "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                     "timing": "best of N (minimum); training steps also give the median; SAM and DCM on one thread"}

    sam_sizes = [(20, 320, 20, 5)] if args.quick else [(20, 320, 20, 5), (60, 2048, 3, 1)]
    results["sam"] = [bench_sam(side, ch, reps, slow) for side, ch, reps, slow in sam_sizes]
    print_table("SAM, 3 windows, one support/query pair (forward, 1 thread)", results["sam"],
                ["grid", "channels", "shifted_s", "unfold_s", "loop_s", "unfold_over_shifted", "loop_over_shifted"])

    dcm_sizes = [(4, 64, 20, 5)] if args.quick else [(4, 64, 20, 5), (8, 256, 60, 5)]
    results["dcm"] = [bench_dcm(b, c, side, s, 20) for b, c, side, s in dcm_sizes]
    print_table("DCM dynamic convolution: one grouped conv vs a per-sample loop (1 thread)", results["dcm"],
                ["batch", "channels", "grid", "v_grouped_ms", "v_loop_ms", "h_grouped_ms", "h_loop_ms",
                 "s_grouped_ms", "s_loop_ms", "v_loop_over_grouped", "s_loop_over_grouped"])

    steps = [
        bench_train_step("tiny", 4, 64, 10, 2),
        bench_train_step("cpu", 4, 160, 5, 1),
        bench_train_step("cpu", 4, 160, 10, 2, cached=True),
    ]
    if not args.quick:
        steps.append(bench_train_step("paper", 1, 473, 2, 1, pretrained=False))
    results["train_step_cpu"] = steps
    print_table("Forward + backward (main + reverse loss), CPU", steps,
                ["preset", "batch", "image_size", "cached_features", "step_s", "step_median_s", "per_episode_s"])
    counts = [{"preset": s["preset"], **{k[7:]: v for k, v in s.items() if k.startswith("params_")}}
              for s in steps if not s["cached_features"]]
    if args.quick:
        counts.append({"preset": "paper", **DPCN(get_preset("paper", pretrained=False)).parameter_counts()})
    results["parameters"] = counts
    print_table("Parameters", counts, ["preset", "total", "trainable", "head", "backbone"])

    if args.gpu:
        if torch.cuda.is_available():
            results["gpu"] = bench_gpu()
            print_table("Paper preset training step on the GPU", results["gpu"],
                        ["device", "precision", "batch", "step_s", "peak_memory_gib"])
        else:
            results["gpu"] = "not measured: CUDA is not available on this machine"
            print("\n--gpu: CUDA is not available here; nothing measured.")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.out == DEFAULT_OUT:  # the copy that ships with the package (notebook 09 reads it after a pip install)
        packaged_benchmark_path("model").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
