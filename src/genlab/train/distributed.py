"""Data-parallel training on torch.distributed: the trajectory depends on the config, not on N.

A data-parallel run has N processes (ranks), started by torchrun (`torch.distributed.run`),
each holding a replica of the model wrapped in `DistributedDataParallel` (gloo on CPU, NCCL
on GPUs). The design makes an N-process run compute the same optimizer steps as one
process, whatever N:

- `train.batch_size` is the global micro-batch. Micro-batch m holds the same examples for
  every N: positions [m b, (m+1) b) of the stream of per-epoch permutations seeded by
  (seed, epoch) (`genlab.train.seeding.EpochBatches`). Each epoch is therefore split into
  disjoint parts, one per rank; no example is dropped or repeated (a micro-batch crossing an
  epoch boundary takes the last examples of one epoch and the first of the next, as for a
  single process).
- Every micro-batch is cut into `train.shards` S equal contiguous slices; rank r computes
  slices [r S/N, (r+1) S/N). Before a slice's loss the global generators are seeded from
  (seed, global slice number), so the noise of every example (diffusion noise levels and
  eps, dequantisation, label dropout, dropout) depends on its place in the global batch,
  never on the rank. S = 0 in the config means "the number of processes at the start";
  S = 1 (one process) keeps the single stream per step of an unsharded run.
- Each rank scales its slice means by 1 / (S/N * grad_accum) and DDP averages over the N
  ranks, so the gradient is the mean over the global batch. Inner backward passes of a step
  run under `no_sync`: one all-reduce per optimizer step.
- Clipping, the divergence check and AdamW see the same all-reduced gradient on every rank,
  so the replicas stay identical. The logged loss is averaged over ranks.
- A model whose first forward changes its parameters (data-dependent initialisation: Glow's
  ActNorm) is initialised on every rank from slice 0 of the first micro-batch, the slice
  rank 0 sees first, so all replicas start as the single process does.

Hence a 2-process run equals a 1-process run with the same `shards` (bit for bit when each
rank computes one slice per step with grad_accum = 1; otherwise up to the order in which
floating-point gradients are summed). A run resumes with any N that divides its S; other N
are refused. Validation is computed by rank 0 and its score broadcast, so early stopping is
decided once; rank 0 alone writes metrics, checkpoints and `best/`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from genlab.errors import ConfigError
from genlab.train.config import TrainConfig

__all__ = ["Parallel", "World", "process_group", "resolve_shards", "torchrun_env"]


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes (rank 0 is the one that writes files)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> World:
        """The default process group's world, or a single process if none is initialised."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def resolve_shards(cfg: TrainConfig, saved: dict[str, Any] | None, world: World) -> TrainConfig:
    """`cfg` with `shards` resolved: the checkpoint's (`saved` train config) or the number of
    processes when 0; raises ConfigError if the processes or the batch cannot share them."""
    shards = cfg.shards
    if shards == 0:
        shards = world.size if saved is None else int(saved.get("shards") or 1)
    if shards % world.size:
        where = "the checkpoint's" if saved is not None and cfg.shards == 0 else "it"
        raise ConfigError(
            f"train.shards = {shards} ({where}) cannot be split over {world.size} processes; "
            f"use a number of processes that divides {shards}: another split would change "
            "the noise each example sees"
        )
    if cfg.batch_size % shards:
        raise ConfigError(
            f"train.batch_size = {cfg.batch_size} is not a multiple of train.shards = "
            f"{shards} (each shard is an equal part of a batch)"
        )
    return cfg.model_copy(update={"shards": shards})


class _LossForward(nn.Module):
    """`model.loss` as a forward, so that DistributedDataParallel sees every loss call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.model.loss(x, cond)


class _DDPLoss:
    """What the training loop calls `.loss` on: the loss through the DDP wrapper."""

    def __init__(self, ddp: DistributedDataParallel) -> None:
        self.ddp = ddp

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.ddp(x, cond)


@dataclass
class Parallel:
    """The data-parallel side of a training run (a single process: every method is trivial)."""

    world: World = field(default_factory=World)
    ddp: DistributedDataParallel | None = None

    def wrap(self, model: nn.Module, device: torch.device, find_unused: bool) -> None:
        """Wrap `model` in DDP (parameters and buffers are broadcast from rank 0)."""
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(
            _LossForward(model), device_ids=ids, find_unused_parameters=find_unused
        )

    def local_shards(self, shards: int) -> range:
        """The shards of every micro-batch this rank computes."""
        per_rank = shards // self.world.size
        return range(self.world.rank * per_rank, (self.world.rank + 1) * per_rank)

    def loss_model(self, model: nn.Module) -> Any:
        """An object whose `.loss(x, cond)` trains `model` (through DDP when wrapped)."""
        return model if self.ddp is None else _DDPLoss(self.ddp)

    def sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Context of a backward pass: gradients are all-reduced only on the step's last."""
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def mean(self, value: Tensor) -> Tensor:
        """The mean of a scalar tensor over the ranks (the tensor itself for one process)."""
        if self.world.size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world.size

    def broadcast(self, value: float, device: torch.device) -> float:
        """Rank 0's `value` on every rank (a decision made once)."""
        if self.world.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.world.size > 1:
            dist.barrier()


def torchrun_env() -> bool:
    """True in a process started by torchrun (it sets RANK, WORLD_SIZE and MASTER_ADDR)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def restart_count() -> int:
    """How often torchrun has restarted the workers of this job (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


@contextlib.contextmanager
def process_group() -> Iterator[tuple[World, torch.device]]:
    """Join the job torchrun started: NCCL and this rank's GPU if there are GPUs, else gloo
    on the CPU. Yields (world, device) and leaves the group on exit."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield World.current(), device
    finally:
        dist.destroy_process_group()
