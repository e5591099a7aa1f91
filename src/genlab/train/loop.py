"""The training loop: AdamW, linear warm-up, clipping, accumulation, EMA, bf16.

The trainer only calls `model.loss(x, cond) -> Tensor` of shape (B,) (per-example losses)
and reduces with the mean. `iter_train` is the training loop as a generator, so a caller owns
logging and stopping; `fit` (`genlab.train.fitting`) adds checkpoints, metrics, a progress
bar and exact resume. Every step is seeded from (seed, step), see `genlab.train.seeding`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from genlab.errors import TrainingDiverged
from genlab.train.config import TrainConfig
from genlab.train.distributed import Parallel, World, resolve_shards
from genlab.train.seeding import (
    EpochBatches,
    derive_seed,
    preserved_rng,
    seed_step,
    shard_seed,
    shard_slices,
)
from genlab.train.state import TrainState


@dataclass
class StepInfo:
    """What one optimizer step produced. Tensors are detached scalars, not yet synced."""

    step: int  # optimizer steps completed, 1-based
    loss: Tensor  # () mean loss over the step's micro-batches
    grad_norm: Tensor  # () total gradient norm before clipping
    lr: float


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate of 0-based optimizer step `step`: linear ramp to `base_lr`, then constant.

    lr(s) = base_lr * min(1, (s + 1) / warmup_steps), so the first step already moves.
    """
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


class LossModel(Protocol):
    """Anything with the family protocol's `loss`: a model, or a model behind DDP."""

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor: ...


def per_example_loss(model: LossModel, x: Tensor, c: Tensor | None, bf16: bool) -> Tensor:
    """`model.loss(x, c)`, shape (B,), under bf16 autocast if asked; checks the shape."""
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())  # fmt: skip
    with autocast:
        per_example = model.loss(x, c)  # (B,)
    if per_example.shape != (x.shape[0],):
        raise ValueError(
            f"model.loss must return per-example losses of shape ({x.shape[0]},), "
            f"got {tuple(per_example.shape)}"
        )
    return per_example


def train_step(
    state: TrainState,
    batches: EpochBatches,
    data: Tensor,
    cond: Tensor | None,
    cfg: TrainConfig,
    parallel: Parallel | None = None,
) -> StepInfo:
    """One optimizer step (grad_accum micro-batches); raises TrainingDiverged before updating.

    With `parallel` (a data-parallel run) this rank computes its shards of every micro-batch
    and the gradient and loss are averaged over the ranks (`genlab.train.distributed`)."""
    model, opt, parallel = state.model, state.optimizer, parallel or Parallel()
    if cfg.shards <= 1:
        seed_step(derive_seed(cfg.seed, "step", state.step), data.device)
    lr = warmup_lr(state.step, cfg.lr, cfg.warmup_steps)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    losses = _accumulate(state, batches, data, cond, cfg, parallel)
    total = losses[0] if len(losses) == 1 else torch.stack(losses).mean()  # ()
    total = parallel.mean(total)
    grad_norm = _grad_norm(opt, cfg.grad_clip)
    if not bool(torch.isfinite(total).logical_and_(torch.isfinite(grad_norm))):  # one sync
        raise TrainingDiverged(_nonfinite_message(total, grad_norm, state.step + 1))
    opt.step()
    state.ema.update(model, state.step)
    state.step += 1
    return StepInfo(step=state.step, loss=total, grad_norm=grad_norm, lr=lr)


def _accumulate(
    state: TrainState,
    batches: EpochBatches,
    data: Tensor,
    cond: Tensor | None,
    cfg: TrainConfig,
    parallel: Parallel,
) -> list[Tensor]:
    """Backward passes over this rank's shards of the step's micro-batches; their mean losses.

    Sharded runs seed the generators before each shard from its global number; the loss of
    each is scaled so that the summed (and rank-averaged) gradient is the global mean."""
    shards = max(cfg.shards, 1)
    local = parallel.local_shards(shards)
    scale = len(local) * cfg.grad_accum
    loss_model = parallel.loss_model(state.model)
    losses = []
    for j in range(cfg.grad_accum):
        micro = state.step * cfg.grad_accum + j
        for shard, idx in shard_slices(batches.indices(micro), shards, local):  # (b/S,)
            if shards > 1:
                seed_step(shard_seed(cfg.seed, micro, shards, shard), data.device)
            with parallel.sync(last=j == cfg.grad_accum - 1 and shard == local[-1]):
                c = None if cond is None else cond[idx]
                loss = _micro_loss(loss_model, data[idx], c, cfg)  # ()
                (loss / scale).backward()
            losses.append(loss.detach())
    return losses


def _micro_loss(model: LossModel, x: Tensor, c: Tensor | None, cfg: TrainConfig) -> Tensor:
    """Mean of the per-example loss of one micro-batch (computed in float32 at least)."""
    per_example = per_example_loss(model, x, c, cfg.bf16)  # (B,)
    if per_example.dtype in (torch.bfloat16, torch.float16):
        per_example = per_example.float()
    return per_example.mean()


def _grad_norm(opt: torch.optim.Optimizer, clip: float) -> Tensor:
    """Total gradient norm of the optimizer's parameters; clips it to `clip` if `clip > 0`."""
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if clip > 0:
        return nn.utils.clip_grad_norm_(params, clip)
    return nn.utils.get_total_norm([p.grad for p in params])


def _nonfinite_message(loss: Tensor, grad_norm: Tensor, step: int) -> str:
    value, what = (loss, "loss") if not torch.isfinite(loss) else (grad_norm, "gradient norm")
    return f"{what} became {value.item()} at step {step}"


def iter_train(
    state: TrainState,
    data: Tensor,
    cfg: TrainConfig,
    *,
    cond: Tensor | None = None,
    parallel: Parallel | None = None,
) -> Iterator[StepInfo]:
    """Train from `state.step` to `cfg.steps`, yielding after every optimizer step.

    `data` is (N, ...) and `cond` (N,) or None, on the model's device. Stop early by leaving
    the loop; `state` is then consistent and can be checkpointed. Every step reseeds the
    global CPU (and device) generators from (cfg.seed, step), or every shard from its
    number in a sharded run. `parallel` (from `data_parallel`) trains as one rank of a
    data-parallel job.
    """
    if cond is not None and cond.shape[0] != data.shape[0]:
        raise ValueError(f"cond has {cond.shape[0]} rows but data has {data.shape[0]}")
    cfg = resolve_shards(cfg, None, (parallel or Parallel()).world)  # 0: one per process
    batches = EpochBatches(data.shape[0], cfg.batch_size, cfg.seed, data.device)
    state.model.train()
    while state.step < cfg.steps:
        yield train_step(state, batches, data, cond, cfg, parallel)


def data_parallel(
    state: TrainState, data: Tensor, cond: Tensor | None, cfg: TrainConfig, world: World
) -> Parallel:
    """This rank's `Parallel` for training `state.model` on `data` (DDP when world.size > 1).

    Before wrapping, one forward and backward pass on slice 0 of the step's first micro-batch
    (with that slice's seed) finds the parameters the loss does not use, which DDP must be
    told about. If that pass changed parameters (a data-dependent initialisation), its effect
    is kept, so every rank starts from the initialisation rank 0's first slice makes;
    otherwise the model's state is restored. `cfg.shards` must be resolved."""
    parallel = Parallel(world)
    if world.size == 1:
        return parallel
    model = state.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    micro = state.step * cfg.grad_accum
    batches = EpochBatches(data.shape[0], cfg.batch_size, cfg.seed, data.device)
    ((_, idx),) = shard_slices(batches.indices(micro), cfg.shards, range(1))
    model.train()
    with preserved_rng(data.device):
        seed_step(shard_seed(cfg.seed, micro, cfg.shards, 0), data.device)
        c = None if cond is None else cond[idx]
        _micro_loss(model, data[idx], c, cfg).backward()
    params = dict(model.named_parameters())
    unused = any(p.requires_grad and p.grad is None for p in params.values())
    if all(torch.equal(p, before[name]) for name, p in params.items() if name in before):
        model.load_state_dict(before)
    model.zero_grad(set_to_none=True)
    parallel.wrap(model, data.device, find_unused=unused)
    return parallel
