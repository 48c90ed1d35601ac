"""Data-parallel training over processes started by `torchrun` (or any launcher that sets its
environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

How a step is split, so that N processes train what one process would at the same global batch:
- every rank reads the same shard order and shuffle (same seeds), and keeps every N-th sample of
  that stream, offset by its rank (trainers.data `rank` / `world`): the ranks' batches k together
  are the one-process batch k, each sample once per epoch, and only a rank's own samples are decoded;
- the flow-matching noise and times are drawn for the global batch from the same-seeded generator
  on every rank, each rank taking its rows (`rows_of_rank`): the noise a sample gets does not
  depend on the world size;
- gradients are averaged over ranks (one flat all-reduce) before clipping and the optimizer step,
  so every rank holds the same weights, optimizer state and RNG state;
- rank 0 validates, logs and writes checkpoints; the resume state counts global batches, so a
  run resumes at another world size.

The gradient all-reduce is written here rather than through DistributedDataParallel: the policy is
called through several entry points (forward, sample_noise, predict_action_chunk, a forward hook
for the trajectory term) that a DDP wrapper would have to forward, and its frozen backbone leaves
parameters without gradients, which DDP would need `find_unused_parameters` for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()  # one process, no group


def from_env(device: str) -> Dist:
    """The process group torchrun's environment describes (gloo on CPU, nccl on CUDA); one process
    without it. Idempotent: a group already initialized is reused."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_batch(batch_size: int, d: Dist) -> int:
    if batch_size % d.world:
        raise ValueError(f"batch_size={batch_size} is the global batch: it must divide by the {d.world} processes "
                         f"(try {batch_size - batch_size % d.world or d.world})")
    return batch_size // d.world


def rows_of_rank(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's rows of a global-batch tensor: the samples it holds are global rows rank, rank+N, ..."""
    return t[d.rank::d.world] if d.active else t


def global_size(n: int, d: Dist) -> int:
    """Samples in this step's global batch (ranks' batches differ in size at the end of an epoch)."""
    if not d.active:
        return n
    t = torch.tensor([n], dtype=torch.int64)
    dist.all_reduce(t)
    return int(t.item())


def average_gradients(params: list[torch.nn.Parameter], d: Dist) -> None:
    """Every rank's gradients replaced by their mean over ranks: one all-reduce of one flat buffer."""
    if not d.active:
        return
    # parameters this step left without a gradient are the same on every rank (one graph); they stay
    # without one, so the optimizer skips them as it does in one process
    held = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in held])  # type: ignore[union-attr]
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for p in held:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))  # type: ignore[union-attr]
        offset += n


def mean_over_ranks(value: float, weight: int, d: Dist) -> float:
    """The weighted mean of a per-rank value (a batch's loss, weighted by its samples)."""
    if not d.active:
        return value
    t = torch.tensor([value * weight, float(weight)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1])


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Rank 0's parameters and buffers on every rank (seeded builds agree; this makes it certain)."""
    if not d.active:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


@contextmanager
def main_first(d: Dist) -> Iterator[None]:
    """Rank 0 runs the block first (it may write files, e.g. the tiny backbone), then the others."""
    if d.active and not d.main:
        dist.barrier()
    yield
    if d.active and d.main:
        dist.barrier()


def broadcast_object(obj: object, d: Dist) -> object:
    """Rank 0's object on every rank."""
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
