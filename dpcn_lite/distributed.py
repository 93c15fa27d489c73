"""Training on several processes (``torchrun``): the process group, equal shares of every epoch, and agreement checks.

* :func:`distributed_context` reads torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and joins the process group
  (NCCL on GPUs, gloo otherwise). Without those variables it is a plain single-process run.
* :class:`EpochSampler` gives every process the same number of episodes, padding the epoch by wrapping around (as
  ``DistributedSampler`` does): with unequal shares one process would wait forever for the others' gradients.
* :func:`gather_objects` collects one picklable value per process (every process's RNG state goes into the
  checkpoint, so that a resumed run draws what an uninterrupted one would).
* :func:`check_ranks_agree` compares a checksum of the weights over the processes: DDP should keep them identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler

from dpcn_lite.utils import default_device


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        """Wait for every process (a no-op in a single process)."""
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def distributed_context(device: torch.device | str | None = None) -> DistributedContext:
    """The process's place in a ``torchrun`` job (joining the process group once), or a single-process context."""
    device = torch.device(device) if isinstance(device, str) else device
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(device=device or default_device())
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    initialised_here = False
    if not dist.is_initialized():
        # Process 0 evaluates alone while the others wait at a barrier: allow it time (the default is 30 minutes).
        dist.init_process_group(backend=backend, timeout=timedelta(hours=3))
        initialised_here = True
    return DistributedContext(rank, world_size, local_rank, device, initialised_here, dist.get_backend())


class EpochSampler(Sampler[int]):
    """Episode indices of one epoch for one process: rank ``r`` takes every ``world``-th of ``0 .. n-1``, the list
    padded by wrapping around to a multiple of ``world`` so that every process gets the same number.

    The randomness lives in the dataset: training episode ``i`` of epoch ``e`` is drawn from ``(seed, e, i)``
    (``EpisodeDataset.set_epoch``), so resuming at an epoch boundary replays exactly the episodes an uninterrupted run
    would have seen, in any number of processes and workers.
    """

    def __init__(self, episodes: int, rank: int = 0, world_size: int = 1):
        self.episodes, self.rank, self.world_size = episodes, rank, world_size
        self.per_process = -(-episodes // world_size)  # ceil

    def __iter__(self) -> Iterator[int]:
        padded = [i % self.episodes for i in range(self.per_process * self.world_size)]
        return iter(padded[self.rank::self.world_size])

    def __len__(self) -> int:
        return self.per_process


def gather_objects(ctx: DistributedContext, value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every process (``[value]`` in a single process)."""
    if not ctx.is_distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def average_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over the processes (epoch losses)."""
    tensor = torch.tensor(list(values.values()), device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(values, tensor.tolist()))


def weights_checksum(model: nn.Module) -> float:
    """A float64 sum over every parameter: equal on every process when DDP keeps the weights in step."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters()).item())


def check_ranks_agree(ctx: DistributedContext, model: nn.Module) -> list[float]:
    """Every process's weight checksum; raises if they differ (the processes trained different models)."""
    sums = gather_objects(ctx, weights_checksum(model))
    if len(set(sums)) > 1:
        raise RuntimeError(f"The {ctx.world_size} processes hold different weights (checksums {sums}).")
    return sums


def unused_parameters(model: nn.Module, loss: torch.Tensor) -> list[str]:
    """Names of trainable parameters that ``loss`` does not reach (DDP needs ``find_unused_parameters`` for them)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return [name for (name, _), grad in zip(named, grads) if grad is None]
