"""GPU check of the paper path: training step, SAM, DCM, test throughput and a short full run, against targets.

    python benchmarks/bench_gpu.py                   # on a GPU machine: about 3-8 minutes, writes results/gpu.json
    python benchmarks/bench_gpu.py --quick           # fewer steps everywhere (a smoke run of the same sizes)
    python benchmarks/bench_gpu.py --tiny --device cpu --output /tmp/gpu.json   # tiny sizes, runs anywhere

Sections (each one timed, each failure recorded as text while the others still run, the JSON rewritten after each):

* ``train_step``: the paper preset (ResNet-50 at stride 8, 473 px, C=256) at batch 8 with AMP (float16 autocast +
  GradScaler): median step time after warm-up and peak memory, for DPCN and the PFENet-like ``prior`` model;
* ``sam``: SAM's ``shifted`` and ``unfold`` formulations at 60x60 with 2,048 channels (layer4), float32 and AMP;
* ``dcm``: DCM's dynamic convolution as one grouped convolution vs a per-sample loop (batch 8, C=256, 60x60, S=5);
* ``test_episodes``: DPCN's test episodes per second at batch 8 (model forward, eval mode, AMP);
* ``full_run``: the paper preset with a random-initialised backbone (no weight download) trained for a few hundred
  steps on the synthetic benchmark rendered at 473 px, then 100 test episodes by the protocol: mIoU and times.

Needs only torch and torchvision (with the numpy and Pillow they bring): the project is imported from its source tree,
and a no-op stand-in replaces ``tqdm`` when it is not installed (the library imports it for progress bars only).
Targets (``TARGETS``) are judged only on the paper sizes on CUDA; a ``--tiny`` run records them as not judged.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.machinery
import json
import math
import os
import platform
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):  # the project and bench_model's helpers, without installing anything
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
RESULTS = ROOT / "benchmarks" / "results"


class _SilentBar:
    """Stand-in for ``tqdm.auto.tqdm`` where tqdm is not installed: iterates, shows nothing."""

    def __init__(self, iterable: Iterable | None = None, *args: Any, **kwargs: Any) -> None:
        self.iterable = iterable if iterable is not None else ()

    def __iter__(self) -> Iterator:
        return iter(self.iterable)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


def install_tqdm_stand_in() -> bool:
    """Register ``tqdm`` / ``tqdm.auto`` stand-ins when tqdm is missing; True when it did.

    A bare GPU machine has torch and torchvision only, and ``data_utils.sources``, ``dpcn_lite.loop`` and
    ``dpcn_lite.evaluate`` import tqdm at the top for their progress bars. Each stand-in carries a ``__spec__``
    because ``torch._dynamo`` calls ``importlib.util.find_spec("tqdm")`` on import, which fails on a module without one.
    """
    try:
        import tqdm.auto  # noqa: F401
        return False
    except ImportError:
        pass
    for name in ("tqdm", "tqdm.auto"):
        module = types.ModuleType(name, "No-op stand-in registered by benchmarks/bench_gpu.py (tqdm is not installed).")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.tqdm = _SilentBar  # type: ignore[attr-defined]
        sys.modules[name] = module
    sys.modules["tqdm"].auto = sys.modules["tqdm.auto"]  # type: ignore[attr-defined]
    return True


# At import time, so that DataLoader workers started by spawn (which re-import this file) get it too.
TQDM_STAND_IN = install_tqdm_stand_in()


# ======================================================================================================================
# What to measure
# ======================================================================================================================


@dataclass(frozen=True)
class Plan:
    """Sizes and counts of one run: the paper's on a GPU, or a tiny set that a CPU runs in seconds (for the test)."""

    name: str
    preset: str
    batch: int
    image_size: int
    step_warmup: int
    step_repeats: int
    sam_batch: int
    sam_channels: int
    sam_side: int
    sam_repeats: int
    sam_slow_repeats: int
    dcm_batch: int
    dcm_channels: int
    dcm_side: int
    dcm_kernel_size: int
    dcm_repeats: int
    episode_batches: int
    run_steps: int
    run_eval_episodes: int
    run_images_per_class: int
    run_selection_episodes: int
    """Held-out episodes scoring each epoch (the paper preset's best-epoch selection, with a short list)."""
    run_train_budget_s: float
    """The full run's steps are cut to fit this many seconds at the DPCN step time measured in ``train_step``."""


PAPER = Plan(
    name="paper", preset="paper", batch=8, image_size=473, step_warmup=3, step_repeats=15,
    sam_batch=8, sam_channels=2048, sam_side=60, sam_repeats=10, sam_slow_repeats=3,
    dcm_batch=8, dcm_channels=256, dcm_side=60, dcm_kernel_size=5, dcm_repeats=20,
    episode_batches=10, run_steps=300, run_eval_episodes=100, run_images_per_class=10, run_selection_episodes=16,
    run_train_budget_s=150.0,
)
QUICK = dataclasses.replace(PAPER, name="quick", step_warmup=2, step_repeats=5, sam_repeats=3, sam_slow_repeats=1,
                            dcm_repeats=5, episode_batches=3, run_steps=60, run_selection_episodes=8,
                            run_train_budget_s=60.0)
TINY = Plan(
    name="tiny", preset="tiny", batch=2, image_size=64, step_warmup=1, step_repeats=3,
    sam_batch=2, sam_channels=32, sam_side=12, sam_repeats=3, sam_slow_repeats=2,
    dcm_batch=2, dcm_channels=16, dcm_side=12, dcm_kernel_size=3, dcm_repeats=3,
    episode_batches=2, run_steps=4, run_eval_episodes=8, run_images_per_class=2, run_selection_episodes=4,
    run_train_budget_s=30.0,
)

FULL_RUN_BENCHMARK = "shapes"
"""The synthetic benchmark of the full run: ``shapes`` has no generated classes, so its training pool (20 classes x
``run_images_per_class``) renders at 473 px in seconds; ``categories`` adds 2,000 images whose labels alone take
minutes to index at that size."""
FULL_RUN_EPOCHS = 5
"""The full run's steps are split into this many epochs so that progress is written to the JSON after each one."""


@dataclass(frozen=True)
class Target:
    """A number the paper path must reach: ``section``'s ``key`` compared with ``threshold``."""

    name: str
    section: str
    key: str
    compare: str  # ">=" or "<="
    threshold: float


TARGETS = (
    Target("SAM: unfold time / shifted time, 60x60, 2048 ch (lower of fp32, AMP)", "sam", "unfold_over_shifted", ">=",
           10.0),
    Target("DPCN training step / prior model's step", "train_step", "dpcn_over_prior_step", "<=", 1.3),
    Target("DPCN peak memory at batch 8, AMP, GiB (16 GB T4)", "train_step", "dpcn_peak_memory_gib", "<=",
           16e9 / 2**30),
)


@dataclass
class Context:
    """What every section gets: the plan, the device, DataLoader workers, and a way to save progress mid-section."""

    plan: Plan
    device: torch.device
    workers: int
    results: dict[str, Any]
    save: Callable[[], None]

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp(self) -> bool:
        """AMP as the loop uses it: float16 autocast + GradScaler on CUDA, float32 on the CPU."""
        return self.cuda

    def measured(self, section: str) -> dict[str, Any]:
        """The result of an earlier section ({} when it failed or did not run)."""
        return self.results["sections"].get(section, {}).get("result") or {}


# ======================================================================================================================
# Helpers
# ======================================================================================================================


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def reset_peak_memory(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(ctx: Context) -> dict[str, float | None]:
    """Peak allocated and reserved GiB since the last reset (None on the CPU, where torch does not count them)."""
    if not ctx.cuda:
        return {"peak_memory_gib": None, "peak_reserved_gib": None}
    return {"peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def release_memory(ctx: Context) -> None:
    """Free what a section left behind, so that the next one's peak memory is its own."""
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def paper_model(name: str, ctx: Context) -> torch.nn.Module:
    """``build_model(name)`` on the plan's preset with a random-initialised backbone (no weight download)."""
    from dpcn_lite.config import get_preset
    from dpcn_lite.model import build_model

    torch.manual_seed(0)
    return build_model(name, get_preset(ctx.plan.preset, pretrained=False)).to(ctx.device)


def to_json(value: Any) -> Any:
    """Plain JSON values: non-finite floats become null (the file must stay valid strict JSON), tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    """Atomic write (a reader, or a timeout, never sees half a file); stdlib only: works when the project fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(to_json(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# ======================================================================================================================
# Sections
# ======================================================================================================================


def environment(device: torch.device) -> dict[str, Any]:
    """Device and versions (torch only: this must work even when the project does not import)."""
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "amp_dtype": "float16" if device.type == "cuda" else None,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tqdm": "no-op stand-in (tqdm not installed)" if TQDM_STAND_IN else "installed",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_memory_gib"] = props.total_memory / 2**30
        info["compute_capability"] = f"{props.major}.{props.minor}"
    for name in ("torchvision", "numpy", "PIL"):
        try:
            info[name] = __import__(name).__version__
        except Exception as error:  # recorded, not fatal: the sections that need it will say more
            info[name] = f"unavailable: {error}"
    return info


def train_step(ctx: Context) -> dict[str, Any]:
    """Forward + backward + optimiser step of DPCN and of the prior model on the same random batch."""
    from bench_model import episode, timed_runs

    plan = ctx.plan
    rows = []
    for name in ("dpcn", "prior"):
        model = paper_model(name, ctx).train()
        optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.005, momentum=0.9, weight_decay=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=ctx.amp)
        data = episode(plan.batch, 1, plan.image_size, str(ctx.device))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=ctx.amp):
                loss = model.loss(data)["loss"]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        for _ in range(plan.step_warmup):  # cuDNN's algorithm search and the allocator settle here
            step()
        reset_peak_memory(ctx)
        runs = timed_runs(step, plan.step_repeats, warmup=0, cuda=ctx.cuda)
        rows.append({"model": name, "batch": plan.batch, "image_size": plan.image_size,
                     "precision": "amp-float16" if ctx.amp else "float32", "step_median_s": median(runs),
                     "step_min_s": runs[0], "steps_timed": len(runs), **peak_memory(ctx),
                     "trainable_parameters": model.parameter_counts()["trainable"]})
        del model, optimizer, scaler, data
        release_memory(ctx)
    dpcn, prior = rows
    result: dict[str, Any] = {"rows": rows, "dpcn_over_prior_step": dpcn["step_median_s"] / prior["step_median_s"],
                              "dpcn_peak_memory_gib": dpcn["peak_memory_gib"]}
    if ctx.cuda:
        result["dpcn_over_prior_peak_memory"] = dpcn["peak_memory_gib"] / prior["peak_memory_gib"]
    return result


def sam(ctx: Context) -> dict[str, Any]:
    """SAM's activation maps (the paper's three windows), forward only, ``shifted`` vs ``unfold``; both are exact."""
    from bench_model import WINDOWS, timed_runs
    from dpcn_lite.modules.sam import activation_maps

    plan = ctx.plan
    g = torch.Generator().manual_seed(0)
    shape = (plan.sam_batch, plan.sam_channels, plan.sam_side, plan.sam_side)
    query = torch.randn(shape, generator=g).to(ctx.device)
    support = torch.randn(shape, generator=g).to(ctx.device)
    mask = (torch.rand(plan.sam_batch, 1, plan.sam_side, plan.sam_side, generator=g) > 0.5).float().to(ctx.device)
    rows = []
    for precision, amp in (("float32", False), ("amp-float16", True))[: 2 if ctx.cuda else 1]:
        row: dict[str, Any] = {"precision": precision, "batch": plan.sam_batch, "channels": plan.sam_channels,
                               "grid": f"{plan.sam_side}x{plan.sam_side}"}
        maps = {}
        with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.float16, enabled=amp):
            for method, repeats in (("shifted", plan.sam_repeats), ("unfold", plan.sam_slow_repeats)):
                maps[method] = activation_maps(query, support, mask, WINDOWS, method)  # also the warm-up
                runs = timed_runs(lambda m=method: activation_maps(query, support, mask, WINDOWS, m), repeats,
                                  warmup=0, cuda=ctx.cuda)
                row[f"{method}_s"] = median(runs)
        row["unfold_over_shifted"] = row["unfold_s"] / row["shifted_s"]
        row["max_abs_difference"] = float((maps["shifted"].float() - maps["unfold"].float()).abs().max())
        rows.append(row)
        del maps
        release_memory(ctx)
    return {"rows": rows, "unfold_over_shifted": min(r["unfold_over_shifted"] for r in rows)}


def dcm(ctx: Context) -> dict[str, Any]:
    """DCM's per-sample depthwise convolution: one grouped convolution (the module's) vs a loop over the batch."""
    from bench_model import timed_runs
    from dpcn_lite.modules.dcm import dynamic_depthwise_conv, dynamic_depthwise_conv_loop

    plan = ctx.plan
    g = torch.Generator().manual_seed(0)
    size = plan.dcm_kernel_size
    features = torch.randn(plan.dcm_batch, plan.dcm_channels, plan.dcm_side, plan.dcm_side, generator=g).to(ctx.device)
    rows = []
    with torch.no_grad():
        for name, shape in (("v", (size, 1)), ("h", (1, size)), ("s", (size, size))):
            kernels = torch.randn(plan.dcm_batch, plan.dcm_channels, *shape, generator=g).to(ctx.device)
            times = {form: median(timed_runs(lambda f=fn: f(features, kernels), plan.dcm_repeats, warmup=3,
                                             cuda=ctx.cuda))
                     for form, fn in (("grouped", dynamic_depthwise_conv), ("loop", dynamic_depthwise_conv_loop))}
            rows.append({"kernel": name, "batch": plan.dcm_batch, "channels": plan.dcm_channels,
                         "grid": f"{plan.dcm_side}x{plan.dcm_side}", "grouped_ms": times["grouped"] * 1e3,
                         "loop_ms": times["loop"] * 1e3, "loop_over_grouped": times["loop"] / times["grouped"]})
    return {"rows": rows, "loop_over_grouped_min": min(r["loop_over_grouped"] for r in rows)}


def test_episodes(ctx: Context) -> dict[str, Any]:
    """DPCN's inference throughput: the model's forward on a batch of test-sized episodes, as ``evaluate`` runs it."""
    from bench_model import episode, timed_runs

    plan = ctx.plan
    model = paper_model("dpcn", ctx).eval()
    data = episode(plan.batch, 1, plan.image_size, str(ctx.device))

    def forward() -> None:
        with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.float16, enabled=ctx.amp):
            model(data["query_image"], data["support_images"], data["support_masks"])

    forward()
    reset_peak_memory(ctx)
    runs = timed_runs(forward, plan.episode_batches, warmup=1, cuda=ctx.cuda)
    row = {"model": "dpcn", "batch": plan.batch, "image_size": plan.image_size, "batch_median_s": median(runs),
           "episodes_per_s": plan.batch / median(runs), **peak_memory(ctx)}
    del model, data
    release_memory(ctx)
    return {"rows": [row], "episodes_per_s": row["episodes_per_s"]}


def full_run(ctx: Context) -> dict[str, Any]:
    """Train + evaluate by the library's own path (``train`` and ``evaluate_on_test``), progress saved per epoch."""
    from dpcn_lite.config import resolve_config
    from dpcn_lite.experiment import evaluate_on_test, make_source, train

    plan = ctx.plan
    steps = plan.run_steps
    step_s = next((r["step_median_s"] for r in ctx.measured("train_step").get("rows", []) if r["model"] == "dpcn"),
                  None)
    if step_s:  # a slow GPU runs fewer steps, so that the whole check stays within its minutes
        steps = min(steps, max(FULL_RUN_EPOCHS, int(plan.run_train_budget_s / step_s)))
    epochs = min(FULL_RUN_EPOCHS, steps)
    steps = epochs * (steps // epochs)
    cfg = resolve_config(plan.preset, "synthetic", epochs=epochs, episodes_per_epoch=steps // epochs * plan.batch,
                         batch_size=plan.batch, eval_episodes=plan.run_eval_episodes, eval_batch_size=plan.batch,
                         num_workers=ctx.workers, synthetic_benchmark=FULL_RUN_BENCHMARK,
                         synthetic_images_per_class=plan.run_images_per_class,
                         selection_episodes=plan.run_selection_episodes, model_overrides={"pretrained": False})
    progress: dict[str, Any] = {"steps_requested": plan.run_steps, "steps": steps, "epochs": epochs,
                                "benchmark": FULL_RUN_BENCHMARK, "images_per_class": plan.run_images_per_class,
                                "selection_episodes": cfg.selection_episodes,
                                "workers": ctx.workers, "amp": cfg.amp and ctx.cuda, "history": []}
    ctx.results["sections"]["full_run"]["partial"] = progress

    def on_epoch_end(row: dict) -> None:
        progress["history"].append(row)
        ctx.save()

    started = time.perf_counter()
    trained = train(cfg, device=ctx.device, progress=False, on_epoch_end=on_epoch_end)
    progress["train_wall_s"] = time.perf_counter() - started
    progress["train_loop_s"] = trained.seconds
    started = time.perf_counter()
    source = make_source(cfg)
    source.class_index("test")  # rendering the test labels once, timed apart from the evaluation
    progress["test_source_s"] = time.perf_counter() - started
    started = time.perf_counter()
    metrics = evaluate_on_test(trained.model, cfg, source=source, device=ctx.device, progress=False, amp=cfg.amp,
                               num_workers=ctx.workers)
    eval_s = time.perf_counter() - started
    del trained
    release_memory(ctx)
    row = {"preset": plan.preset, "steps": steps, "batch": plan.batch, "image_size": plan.image_size,
           "train_s": progress["train_wall_s"], "s_per_step": progress["train_loop_s"] / steps,
           "final_loss": progress["history"][-1]["loss"], "eval_episodes": metrics["episodes"], "eval_s": eval_s,
           "eval_episodes_per_s": metrics["episodes"] / eval_s, "mIoU": metrics["mIoU"], "FB-IoU": metrics["FB-IoU"]}
    return {**progress, "rows": [row], "mIoU": metrics["mIoU"], "FB-IoU": metrics["FB-IoU"]}


SECTIONS: dict[str, tuple[Callable[[Context], dict[str, Any]], str, list[str]]] = {
    "train_step": (train_step, "Training step (forward + backward + SGD step)",
                   ["model", "batch", "image_size", "precision", "step_median_s", "peak_memory_gib",
                    "peak_reserved_gib"]),
    "sam": (sam, "SAM, three windows, forward", ["precision", "batch", "channels", "grid", "shifted_s", "unfold_s",
                                                 "unfold_over_shifted", "max_abs_difference"]),
    "dcm": (dcm, "DCM dynamic convolution: grouped vs per-sample loop, forward",
            ["kernel", "batch", "channels", "grid", "grouped_ms", "loop_ms", "loop_over_grouped"]),
    "test_episodes": (test_episodes, "Test episodes (DPCN forward, eval mode)",
                      ["model", "batch", "image_size", "batch_median_s", "episodes_per_s", "peak_memory_gib"]),
    "full_run": (full_run, "Short full run (random-initialised backbone, synthetic data)",
                 ["preset", "steps", "batch", "image_size", "train_s", "s_per_step", "final_loss", "eval_episodes",
                  "eval_s", "eval_episodes_per_s", "mIoU", "FB-IoU"]),
}


# ======================================================================================================================
# Running and reporting
# ======================================================================================================================


def judge_targets(results: dict[str, Any], judged: bool) -> list[dict[str, Any]]:
    """Each target with its measurement; ``pass`` is null when not measured or not judged (tiny sizes, or the CPU)."""
    rows = []
    for target in TARGETS:
        section = results["sections"].get(target.section, {})
        measured = (section.get("result") or {}).get(target.key)
        passed = None
        if judged and measured is not None:
            passed = measured >= target.threshold if target.compare == ">=" else measured <= target.threshold
        note = "" if judged else "not judged: not the paper sizes on CUDA"
        if judged and measured is None:
            note = f"not measured: section {target.section} {section.get('status', 'did not run')}"
        rows.append({"target": target.name, "measured": measured,
                     "threshold": f"{target.compare} {target.threshold:.3g}", "pass": passed, "note": note})
    return rows


def run_section(name: str, ctx: Context) -> None:
    """Run one section; its result or its error, and its wall time, go into the results, which are then saved."""
    function, title, keys = SECTIONS[name]
    record: dict[str, Any] = {"status": "running"}
    ctx.results["sections"][name] = record
    ctx.save()
    started = time.perf_counter()
    try:
        record["result"] = function(ctx)
        record["status"] = "ok"
        record.pop("partial", None)  # progress saved mid-section, now inside the result
    except Exception as error:  # recorded; the next section still runs
        record["status"] = "error"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc(limit=-6)
        release_memory(ctx)
    record["seconds"] = time.perf_counter() - started
    ctx.save()
    if record["status"] == "ok":
        print_rows(f"{title}  [{record['seconds']:.1f} s]", record["result"]["rows"], keys)
    else:
        print(f"\n## {title}: FAILED after {record['seconds']:.1f} s\n{record['error']}")


def print_rows(title: str, rows: list[dict], keys: list[str]) -> None:
    """bench_model's table; a plain dump where the project (which bench_model imports) does not import."""
    try:
        from bench_model import print_table
    except Exception:
        print(f"\n## {title}\n" + "\n".join(json.dumps(to_json(row)) for row in rows))
        return
    print_table(title, rows, keys)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when available)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="tiny preset and sizes: seconds on a CPU (for tests)")
    size.add_argument("--quick", action="store_true", help="paper sizes with fewer steps everywhere")
    parser.add_argument("--steps", type=int, help="full run: training steps (default 300; --quick 60; --tiny 4)")
    parser.add_argument("--eval-episodes", type=int, help="full run: test episodes (default 100; --tiny 8)")
    parser.add_argument("--workers", type=int,
                        help="full run: DataLoader workers (default: up to 8 on CUDA, leaving 2 cores; 0 on the CPU)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (e.g. to rerun one)")
    parser.add_argument("--output", type=Path,
                        help="JSON path (default results/gpu.json; --tiny: results/gpu_tiny.json)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    for name in ("steps", "eval_episodes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.workers is not None and args.workers < 0:
        parser.error("--workers must be 0 or more")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use --tiny --device cpu")
    if device.type != "cuda" and not args.tiny:
        parser.error(f"--device {args.device}: the paper sizes need a GPU; use --tiny for a CPU run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    plan = TINY if args.tiny else QUICK if args.quick else PAPER
    if args.tiny and device.type == "cpu":
        torch.set_num_threads(1)  # tiny kernels gain nothing from threads, and stall when another process takes a core
    plan = dataclasses.replace(plan, run_steps=args.steps or plan.run_steps,
                               run_eval_episodes=args.eval_episodes or plan.run_eval_episodes)
    workers = args.workers if args.workers is not None else (
        min(8, max(0, (os.cpu_count() or 1) - 2)) if device.type == "cuda" else 0)
    output = args.output or RESULTS / ("gpu_tiny.json" if args.tiny else "gpu.json")
    judged = plan.preset == "paper" and device.type == "cuda"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "benchmarks/bench_gpu.py", "plan": dataclasses.asdict(plan), "workers": workers,
        "timing": "median of N after warm-up, torch.cuda.synchronize() around each run; peak memory reset before",
        "environment": {}, "targets": [], "sections": {}, "finished": False,
    }

    def save() -> None:
        results["targets"] = judge_targets(results, judged)
        results["total_seconds"] = time.perf_counter() - started
        write_json(results, output)

    ctx = Context(plan, device, workers, results, save)
    try:
        results["environment"] = environment(device)
    except Exception as error:
        results["environment"] = {"error": f"{type(error).__name__}: {error}"}
    env = results["environment"]
    print(f"{plan.name} plan on {env.get('device')} | torch {env.get('torch')} | torchvision "
          f"{env.get('torchvision')} | CUDA {env.get('cuda')} | AMP {env.get('amp_dtype')} | tqdm {env.get('tqdm')}")
    for name in SECTIONS:  # in this order whatever --sections says: the full run reads train_step's step time
        if name in args.sections:
            run_section(name, ctx)
    results["finished"] = True
    save()
    print_rows("Targets", results["targets"], ["target", "measured", "threshold", "pass", "note"])
    shown = output.resolve().relative_to(ROOT) if output.resolve().is_relative_to(ROOT) else output
    print(f"\n{time.perf_counter() - started:.0f} s in all; wrote {shown}")
    return 0 if all(results["sections"][name]["status"] == "ok" for name in args.sections) else 1


if __name__ == "__main__":
    sys.exit(main())
