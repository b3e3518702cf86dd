"""Data-parallel helpers over ``torch.distributed``: process group set-up, rank facts, reductions.

``torchrun --nproc_per_node N -m atrous train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and starts the process group (NCCL on
GPUs, Gloo on CPUs). Without them every helper behaves as a world of one process, so the
single-process path runs the same code with no collectives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in the job; ``owns_group`` says :func:`cleanup` must end it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_world() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device) -> tuple[WorldInfo, torch.device]:
    """Join the process group the launcher describes (if any) and pick this rank's device.

    Reuses a group that is already initialised (e.g. by a caller or a test harness). On CUDA
    each process takes ``cuda:LOCAL_RANK``. Returns the world facts and the device to use.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        owns = False
    else:
        rank, world, local = _env_world()
        owns = world > 1
        if owns:
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return WorldInfo(rank, world, local, owns), device


def cleanup(info: WorldInfo) -> None:
    """End the process group if :func:`init_distributed` started it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0, or when not running distributed."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier(info: WorldInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: WorldInfo, device: torch.device) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place, and return it (a no-op on one process).

    The collective runs on ``device`` (NCCL needs CUDA tensors); the result is copied back
    into ``tensor`` on its own device.
    """
    if not info.distributed:
        return tensor
    work = tensor.to(device)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def global_mean(
    value: float, count: int, info: WorldInfo, device: torch.device
) -> tuple[float, float]:
    """For this rank's ``value``, a mean over ``count`` items (e.g. kept pixels): returns
    ``(gradient scale, mean over every rank's items)``.

    DDP averages gradients over ranks, but ranks average over different numbers of items
    (ignore borders, padding). Scaling each rank's loss by ``count * world_size / total_count``
    makes the averaged gradient that of the mean over all items of the global batch, as one
    process computes it. A global batch with no items gives ``(1.0, 0.0)``.
    """
    sums = torch.tensor([count, count * value], dtype=torch.float64)
    total_count, total = all_reduce_sum(sums, info, device).tolist()
    if total_count == 0:
        return 1.0, 0.0
    return count * info.world_size / total_count, total / total_count


def rank0_decides(value: Any, info: WorldInfo) -> Any:
    """Rank 0's ``value`` on every rank (e.g. whether to resume), so that nodes with their
    own disks cannot take different decisions (a no-op on one process)."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
