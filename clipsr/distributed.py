"""torchrun support: the same command trains on one process or many (DDP; gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """This process's place in a torchrun job (WORLD_SIZE set; else a single process) and its device:
    each process of a CUDA job takes the GPU of its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world == 1:
        return Dist(), device
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=world, local_rank=local_rank), device


def teardown(ctx: Dist) -> None:
    if ctx.world > 1:
        dist.destroy_process_group()


def barrier(ctx: Dist) -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if ctx.world > 1:
        dist.barrier()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" (CUDA when there is one), "cpu" or "cuda"; CUDA means the GPU `local_rank`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device
