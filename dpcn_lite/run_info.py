"""Where and how a run runs, said once at its start: the banner (printed) and the ``run`` block of ``config.json``.

A run that silently lands somewhere else than its user thinks wastes hours: a CUDA build of torch on a too-old driver
falls back to the CPU, ``torchrun`` then falls back to gloo, and the ``paper`` preset on a CPU takes days. The banner
names the device (and GPU), the precision, the processes, each parameter group's starting LR and the episode counts,
and warns in those cases.
"""

from __future__ import annotations

import platform
import shutil
from typing import Any

import torch

from dpcn_lite.config import TrainConfig
from dpcn_lite.distributed import DistributedContext


def describe_run(cfg: TrainConfig, ctx: DistributedContext, *, episodes_per_epoch: int, steps_per_epoch: int,
                 group_lrs: dict[str, float], find_unused_parameters: bool | None = None) -> dict[str, Any]:
    """The facts of this run as a JSON-ready dict (stored under ``run`` in ``config.json``)."""
    use_amp = cfg.amp and ctx.device.type == "cuda"
    info: dict[str, Any] = {
        "device": str(ctx.device),
        "gpu": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "python": platform.python_version(),
        "precision": "float16 autocast + GradScaler" if use_amp else "float32",
        "world_size": ctx.world_size,
        "backend": ctx.backend if ctx.world_size > 1 else None,
        "effective_lr_per_group": group_lrs,
        "episodes_per_epoch": episodes_per_epoch,
        "episodes_per_epoch_per_process": steps_per_epoch * (cfg.batch_size // ctx.world_size),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * cfg.epochs,
        "batch_per_process": cfg.batch_size // ctx.world_size,
    }
    if find_unused_parameters is not None:
        info["find_unused_parameters"] = find_unused_parameters
    info["warnings"] = run_warnings(cfg, ctx)
    return info


def run_warnings(cfg: TrainConfig, ctx: DistributedContext) -> list[str]:
    """Plain-language warnings about where the run landed."""
    warnings = []
    gpu_driver = shutil.which("nvidia-smi") is not None
    if ctx.device.type == "cpu" and torch.version.cuda is not None and not torch.cuda.is_available() and gpu_driver:
        warnings.append(f"this torch build supports CUDA {torch.version.cuda} and an NVIDIA driver is installed, but "
                        "torch cannot use the GPU (a driver too old for this build?); the run uses the CPU")
    if ctx.device.type == "cpu" and cfg.preset == "paper":
        warnings.append("the paper preset on a CPU will be very slow (ResNet-50 at 473 px, layer4 trained, no "
                        "feature cache: hours per epoch); use a GPU, or --preset cpu for a laptop")
    if ctx.world_size > 1 and ctx.backend == "gloo" and torch.cuda.is_available():
        warnings.append("several processes on gloo while a GPU is visible: run with --device cuda for NCCL")
    return warnings


def format_banner(cfg: TrainConfig, info: dict[str, Any]) -> str:
    """The banner's lines, e.g. ``run: cpu | float32 | 1 process | lr head 0.001 | 600 episodes x 20 epochs``."""
    device = info["device"] + (f" ({info['gpu']})" if info["gpu"] else "")
    processes = f"{info['world_size']} process" + ("es on " + info["backend"] if info["world_size"] > 1 else "")
    rates = ", ".join(f"{name} {lr:.3g}" for name, lr in info["effective_lr_per_group"].items())
    lines = [f"run: {cfg.model} | {cfg.preset} preset | {cfg.dataset} fold {cfg.fold} | {cfg.shots}-shot",
             f"     {device} | {info['precision']} | {processes} | lr {rates}",
             f"     {info['episodes_per_epoch']} episodes x {cfg.epochs} epochs = {info['total_steps']} steps of "
             f"batch {cfg.batch_size}"]
    lines += [f"warning: {text}" for text in info["warnings"]]
    return "\n".join(lines)
