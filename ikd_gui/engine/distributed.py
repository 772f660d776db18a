"""Multi-process training under torchrun: process group, rank roles and the few collectives the loop needs.

Outside torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything here is a no-op and a run is a plain
single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> "ProcessGroup":
        """Join the torchrun job this process belongs to (NCCL on GPUs, gloo on CPUs), if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's sample order (DistributedSampler semantics, without padding)."""
        if not self.active:
            return order
        usable = len(order) - len(order) % self.world_size
        return order[self.rank:usable:self.world_size]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """True on every rank only when `flag` is true on every rank (so all ranks stop together)."""
        if not self.active:
            return flag
        tensor = torch.tensor([int(flag)], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return bool(tensor.item())

    def sync_buffers(self, module: nn.Module) -> None:
        """BatchNorm statistics from rank 0, so every rank evaluates exactly the same model."""
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, network: nn.Module, device: torch.device, has_unused_parameters: bool) -> nn.Module:
        """DistributedDataParallel around the trained network; frozen (teacher) parameters are not synced."""
        if not self.active:
            return network
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(network, device_ids=device_ids,
                                                   find_unused_parameters=has_unused_parameters)
