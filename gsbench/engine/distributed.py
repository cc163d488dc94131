"""torch.distributed plumbing for training under ``torchrun``.

``gsbench train`` runs as one process, or as one process per GPU (or CPU worker) when started by
torchrun, which sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Multi-node runs use torchrun's
own flags, e.g. on each of 2 nodes::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m gsbench.cli train --recipe psanet101 --data DATA

The backend is NCCL on CUDA and gloo on CPU. Only rank 0 writes files; every rank reads the
same data, recipe and (on resume) checkpoint, so multi-node runs need a shared file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gsbench.errors import GsbenchError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the torchrun process group when launched by torchrun; pick the device.

    ``device`` is ``cpu`` or ``cuda``; under torchrun with CUDA each process takes GPU
    ``LOCAL_RANK``.
    """
    if device not in ("cpu", "cuda"):
        raise GsbenchError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise GsbenchError("--device cuda: no CUDA device is available (use --device cpu)")
    if not launched_by_torchrun():
        return DistContext(device=torch.device("cuda", 0) if device == "cuda" else torch.device("cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device == "cuda" else "gloo",
            timeout=timedelta(minutes=30),
            **({"device_id": torch_device} if device == "cuda" else {}),
        )
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=torch_device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (for decisions only rank 0 may take, e.g. file checks)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_mean(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Mean of a (float64) tensor over ranks; a NaN on any rank makes the result NaN."""
    if not ctx.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / ctx.world_size


def all_reduce_min(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum of a tensor over ranks (e.g. the first iteration any rank flagged)."""
    if not ctx.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
