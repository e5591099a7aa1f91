"""The family-agnostic trainer: AdamW, linear warm-up, clipping, accumulation, EMA, bf16.

The trainer only calls `model.loss(x, cond) -> Tensor` of shape (B,) (per-example losses)
and reduces with the mean. `iter_train` is the training loop as a generator, so a caller owns
logging and stopping; `fit` adds checkpoints, metrics, a progress bar and exact resume.

Determinism without saved RNG state: every optimizer step starts with
`seed_step(derive_seed(seed, "step", step))` (the global CPU and device generators, as
`torch.manual_seed` would), so the model's own noise draws depend only on (seed, step);
batches come from a per-epoch permutation seeded by (seed, epoch).
A run resumed from a checkpoint is therefore bit-identical to an uninterrupted one.

Validation (`val_every > 0`, in `fit`): every `val_every` steps the model (its EMA weights if
`val_use_ema`) is scored on validation data, either given to `fit` or carved from the
training data (`val_fraction`, a split seeded by `seed`). Scoring runs in eval mode under
`no_grad` with the global generators seeded from `val_seed` (the same noise draws at every
evaluation) inside a forked RNG, so training is bit-identical to a run without validation
apart from where it stops. The best score is kept in `checkpoints/best/`; after `patience`
evaluations without improvement `fit` stops early. The bookkeeping is part of the trainer
state, so resume stays exact.

Time budget (`max_seconds > 0`, in `fit`): training stops after that many seconds spent in
optimizer steps (validation, logging and checkpoints are not counted), measured on the
`time_clock`: "wall" (time.perf_counter) or "cpu" (this process's CPU time, steadier than
wall time on a shared machine). The seconds used are part of the trainer state, so a resumed
run continues the same budget; where a timed run stops depends on the machine, so such runs
are reproducible only up to their stopping step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError, TrainingDiverged
from genlab.train import checkpoint as ckpt
from genlab.train.ema import EMA

_MASK64 = (1 << 64) - 1
# fields that change the trajectory: a resumed run must use the same values
_TRAJECTORY_FIELDS = (
    "batch_size", "lr", "weight_decay", "betas", "warmup_steps", "grad_clip", "grad_accum",
    "ema_decay", "bf16", "seed", "val_fraction",
)  # fmt: skip
# fields that change the meaning of the saved validation bookkeeping
_VALIDATION_FIELDS = ("val_every", "val_seed", "val_use_ema")
SELECT_CHOICES = ("last", "best")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class TrainConfig:
    """Optimisation settings. `batch_size` is per micro-batch; a step sees grad_accum of them."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100  # linear warm-up, then constant
    grad_clip: float | None = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.999
    bf16: bool = False  # torch.autocast(device, dtype=bfloat16) around the loss
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True
    val_every: int = 0  # evaluate on validation data every this many steps; 0 = never
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    val_seed: int = 12345  # seeds the global generators before each evaluation
    val_fraction: float = 0.0  # > 0 and no val data given: carve this much of the train data
    select: str = "last"  # weights fit leaves in the model: "last" or "best" (validation)
    val_use_ema: bool = True  # score the EMA weights (else the raw weights)
    max_seconds: float = 0.0  # > 0: stop after this much training time (see time_clock)
    time_clock: str = "wall"  # clock of max_seconds: "wall" or "cpu" (process CPU time)

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        positive = ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every",
                    "keep_checkpoints")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.ema_decay < 1:
            raise ConfigError("train: need lr > 0, warmup_steps >= 0 and 0 <= ema_decay < 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("val_every", "patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.select not in SELECT_CHOICES:
            raise ConfigError(f"train.select must be 'last' or 'best', got {self.select!r}")
        if self.max_seconds < 0:
            raise ConfigError(f"train.max_seconds must be >= 0, got {self.max_seconds}")
        if self.time_clock not in CLOCKS:
            raise ConfigError(f"train.time_clock must be 'wall' or 'cpu', got {self.time_clock!r}")
        if self.val_every == 0 and (self.patience > 0 or self.select == "best"):
            raise ConfigError("train.patience > 0 and train.select = 'best' need val_every > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown train setting(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass
class StepInfo:
    """What one optimizer step produced. Tensors are detached scalars, not yet synced."""

    step: int  # optimizer steps completed, 1-based
    loss: Tensor  # () mean loss over the step's micro-batches
    grad_norm: Tensor  # () total gradient norm before clipping
    lr: float


@dataclass
class TrainResult:
    """Outcome of `fit`."""

    steps: int  # optimizer steps completed in total
    final_loss: float | None  # mean loss of the last log window of this call (None if no step)
    checkpoint: Path  # the final checkpoint directory (`checkpoints/best` if select="best")
    run_dir: Path
    elapsed: float  # seconds of training over all sessions of the run
    stopped_early: bool = False  # validation patience ran out before cfg.steps
    stop_reason: str = "steps"  # "steps", "patience" or "time" (cfg.max_seconds used up)
    best_step: int | None = None  # step of the best validation score (None: no validation)
    best_val: float | None = None  # the best validation score


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate of 0-based optimizer step `step`: linear ramp to `base_lr`, then constant.

    lr(s) = base_lr * min(1, (s + 1) / warmup_steps), so the first step already moves.
    """
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def derive_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed from (seed, stream, index) by SplitMix64 mixing; streams never collide."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & _MASK64
    for char in stream:
        z = ((z ^ ord(char)) * 0x100000001B3) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the global generators the model draws from: the CPU one and that of `device`.

    Like `torch.manual_seed` but ~100x cheaper per call, as it skips every other backend.
    """
    torch.default_generator.manual_seed(seed)
    if device.type != "cpu":
        torch.get_device_module(device.type).manual_seed_all(seed)


class EpochBatches:
    """Micro-batch m holds positions [m*b, (m+1)*b) of the stream perm_0 ++ perm_1 ++ ...

    perm_e is a permutation of range(n) seeded by (seed, e). Because positions are global,
    k micro-batches of size b cover exactly the examples of one batch of size k*b.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=gen).to(self.device)
        return self._perms[epoch]

    def indices(self, micro: int) -> Tensor:
        """Example indices of micro-batch `micro`, shape (batch_size,)."""
        start, stop = micro * self.batch_size, (micro + 1) * self.batch_size
        pieces = []
        while start < stop:
            epoch, offset = divmod(start, self.n)
            take = min(stop - start, self.n - offset)
            pieces.append(self._perm(epoch)[offset : offset + take])
            start += take
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


@dataclass
class TrainState:
    """Everything that evolves during training. `step` counts completed optimizer steps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    step: int = 0
    elapsed: float = 0.0
    best_val: float | None = None  # best validation score so far
    best_step: int | None = None  # the step it was reached at
    bad_evals: int = 0  # evaluations since the last improvement
    train_seconds: float = 0.0  # time spent in optimizer steps, on cfg.time_clock

    @classmethod
    def create(cls, model: nn.Module, cfg: TrainConfig) -> TrainState:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        return cls(model=model, optimizer=optimizer, ema=EMA(model, cfg.ema_decay))

    def trainer_state(self, cfg: TrainConfig) -> dict[str, Any]:
        """The part of the state saved in `trainer_state.pt` (weights go to safetensors)."""
        validation = {"best_val": self.best_val, "best_step": self.best_step,
                      "bad_evals": self.bad_evals}  # fmt: skip
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "elapsed": self.elapsed, "train_seconds": self.train_seconds,
                "train_config": cfg.to_dict(), "validation": validation}  # fmt: skip

    def restore(self, ckpt_dir: Path, cfg: TrainConfig) -> None:
        """Load weights, EMA and optimizer state from a checkpoint directory."""
        saved = ckpt.read_trainer_state(ckpt_dir)
        _check_same_trajectory(saved.get("train_config", {}), cfg, ckpt_dir)
        ckpt.load_weights(ckpt_dir, self.model, ema=False)
        device = next(iter(self.ema.shadow.values())).device if self.ema.shadow else "cpu"
        self.ema.load_state_dict(ckpt.read_tensors(ckpt_dir / ckpt.EMA_FILE, device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.elapsed = int(saved["step"]), float(saved.get("elapsed", 0.0))
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        validation = saved.get("validation") or {}
        best_val, best_step = validation.get("best_val"), validation.get("best_step")
        self.best_val = None if best_val is None else float(best_val)
        self.best_step = None if best_step is None else int(best_step)
        self.bad_evals = int(validation.get("bad_evals", 0))

    def record_validation(self, score: float) -> bool:
        """Book a validation score at the current step; True if it is a new best.

        Only a strictly lower finite score improves; NaN or inf count as no improvement.
        """
        if math.isfinite(score) and (self.best_val is None or score < self.best_val):
            self.best_val, self.best_step, self.bad_evals = score, self.step, 0
            return True
        self.bad_evals += 1
        return False

    def patience_exhausted(self, cfg: TrainConfig) -> bool:
        return cfg.val_every > 0 and cfg.patience > 0 and self.bad_evals >= cfg.patience

    def out_of_time(self, cfg: TrainConfig) -> bool:
        return cfg.max_seconds > 0 and self.train_seconds >= cfg.max_seconds


def _check_same_trajectory(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    now = cfg.to_dict()
    names = _TRAJECTORY_FIELDS
    if saved.get("val_every", 0) > 0 and cfg.val_every > 0:  # validation bookkeeping to continue
        names += _VALIDATION_FIELDS
    for name in names:
        if name in saved and saved[name] != now[name]:
            raise ConfigError(
                f"train.{name} is {now[name]!r} but the checkpoint {where} was trained with "
                f"{saved[name]!r}; resume needs the same value (or start a new run_dir)"
            )


def _nonfinite_message(loss: Tensor, grad_norm: Tensor, step: int) -> str:
    value, what = (loss, "loss") if not torch.isfinite(loss) else (grad_norm, "gradient norm")
    return f"{what} became {value.item()} at step {step}"


def train_step(
    state: TrainState, batches: EpochBatches, data: Tensor, cond: Tensor | None, cfg: TrainConfig
) -> StepInfo:
    """One optimizer step (grad_accum micro-batches); raises TrainingDiverged before updating."""
    model, opt = state.model, state.optimizer
    seed_step(derive_seed(cfg.seed, "step", state.step), data.device)
    lr = warmup_lr(state.step, cfg.lr, cfg.warmup_steps)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    losses = []
    for j in range(cfg.grad_accum):
        idx = batches.indices(state.step * cfg.grad_accum + j)  # (b,)
        loss = _micro_loss(model, data[idx], None if cond is None else cond[idx], cfg)  # ()
        (loss / cfg.grad_accum).backward()
        losses.append(loss.detach())
    total = losses[0] if len(losses) == 1 else torch.stack(losses).mean()  # ()
    grad_norm = _grad_norm(opt, cfg.grad_clip)
    if not bool(torch.isfinite(total).logical_and_(torch.isfinite(grad_norm))):  # one sync
        raise TrainingDiverged(_nonfinite_message(total, grad_norm, state.step + 1))
    opt.step()
    state.ema.update(model, state.step)
    state.step += 1
    return StepInfo(step=state.step, loss=total, grad_norm=grad_norm, lr=lr)


def _micro_loss(model: nn.Module, x: Tensor, c: Tensor | None, cfg: TrainConfig) -> Tensor:
    """Mean of the per-example loss of one micro-batch, under bf16 autocast if asked."""
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())  # fmt: skip
    with autocast:
        per_example = model.loss(x, c)  # (B,)
    if per_example.shape != (x.shape[0],):
        raise ValueError(
            f"model.loss must return per-example losses of shape ({x.shape[0]},), "
            f"got {tuple(per_example.shape)}"
        )
    if per_example.dtype in (torch.bfloat16, torch.float16):
        per_example = per_example.float()
    return per_example.mean()


def _grad_norm(opt: torch.optim.Optimizer, clip: float | None) -> Tensor:
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if clip is not None:
        return nn.utils.clip_grad_norm_(params, clip)
    return nn.utils.get_total_norm([p.grad for p in params])


def iter_train(
    state: TrainState, data: Tensor, cfg: TrainConfig, *, cond: Tensor | None = None
) -> Iterator[StepInfo]:
    """Train from `state.step` to `cfg.steps`, yielding after every optimizer step.

    `data` is (N, ...) and `cond` (N,) or None, on the model's device. Stop early by leaving
    the loop; `state` is then consistent and can be checkpointed. Every step reseeds the
    global CPU (and device) generators from (cfg.seed, step).
    """
    if cond is not None and cond.shape[0] != data.shape[0]:
        raise ValueError(f"cond has {cond.shape[0]} rows but data has {data.shape[0]}")
    batches = EpochBatches(data.shape[0], cfg.batch_size, cfg.seed, data.device)
    state.model.train()
    while state.step < cfg.steps:
        yield train_step(state, batches, data, cond, cfg)


# ---------------------------------------------------------------------------- validation


def split_validation(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic split of range(n): (train indices, validation indices), both sorted.

    round(fraction * n) rows (at least 1, at most n - 1) go to validation, chosen by a
    permutation seeded from (seed, "val_split"); the two parts are disjoint and cover range(n).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ConfigError(f"cannot carve a validation split out of {n} training example(s)")
    n_val = min(n - 1, max(1, round(fraction * n)))
    gen = torch.Generator().manual_seed(derive_seed(seed, "val_split", 0))
    perm = torch.randperm(n, generator=gen)  # (n,)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore the global CPU (and `device`'s) generator states on exit."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
        return
    count = torch.get_device_module(device.type).device_count()
    with torch.random.fork_rng(devices=list(range(count)), device_type=device.type):
        yield


@torch.no_grad()
def validation_score(
    model: nn.Module,
    val_data: Tensor,
    val_cond: Tensor | None = None,
    *,
    batch_size: int,
    seed: int = 12345,
    ema: EMA | None = None,
    val_fn: Callable[[nn.Module, Tensor, Tensor | None], float] | None = None,
    bf16: bool = False,
) -> float:
    """Validation score of `model` (with the weights of `ema` swapped in, if given).

    The default score is the mean of `model.loss` over all of `val_data`, in chunks of
    `batch_size` rows; `val_fn(model, val_data, val_cond)` replaces it. Either runs in eval
    mode under `no_grad`, after seeding the global generators with `seed`, so a stochastic
    loss sees the same draws at every call. Afterwards the generator states, the weights and
    the train/eval mode are exactly as before.
    """
    training = model.training
    backup = None
    with _preserved_rng(val_data.device):
        try:
            if ema is not None:
                backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
                ema.copy_to(model)
            model.eval()
            seed_step(seed, val_data.device)
            if val_fn is not None:
                return float(val_fn(model, val_data, val_cond))
            return _mean_loss(model, val_data, val_cond, batch_size, bf16)
        finally:
            if backup is not None:
                model.load_state_dict(backup)
            model.train(training)


def _mean_loss(
    model: nn.Module, data: Tensor, cond: Tensor | None, batch_size: int, bf16: bool
) -> float:
    n = data.shape[0]
    if n == 0:
        raise ValueError("validation data is empty")
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    autocast = (torch.autocast(data.device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())  # fmt: skip
    for start in range(0, n, batch_size):
        x = data[start : start + batch_size]
        with autocast:
            per_example = model.loss(x, None if cond is None else cond[start : start + batch_size])
        if per_example.shape != (x.shape[0],):
            raise ValueError(
                f"model.loss must return per-example losses of shape ({x.shape[0]},), "
                f"got {tuple(per_example.shape)}"
            )
        total += per_example.double().sum()
    return float(total) / n


def _validation_data(
    data: Tensor,
    cond: Tensor | None,
    val_data: Tensor | None,
    val_cond: Tensor | None,
    cfg: TrainConfig,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(train data, train cond, val data, val cond): carve a split if asked and none is given."""
    if val_data is None and val_cond is not None:
        raise ValueError("val_cond given without val_data")
    if val_data is None and cfg.val_fraction > 0:
        if cond is not None and cond.shape[0] != data.shape[0]:
            raise ValueError(f"cond has {cond.shape[0]} rows but data has {data.shape[0]}")
        train_idx, val_idx = split_validation(data.shape[0], cfg.val_fraction, cfg.seed)
        train_idx, val_idx = train_idx.to(data.device), val_idx.to(data.device)
        val_data, data = data[val_idx], data[train_idx]
        if cond is not None:
            val_cond, cond = cond[val_idx], cond[train_idx]
    if cfg.val_every > 0 and val_data is None:
        raise ConfigError("train.val_every > 0 needs val_data or train.val_fraction > 0")
    if val_data is not None and val_cond is not None and val_cond.shape[0] != val_data.shape[0]:
        raise ValueError(f"val_cond has {val_cond.shape[0]} rows but val_data has "
                         f"{val_data.shape[0]}")  # fmt: skip
    return data, cond, val_data, val_cond


# ---------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    data: Tensor,
    cfg: TrainConfig,
    run_dir: Path | str,
    *,
    cond: Tensor | None = None,
    run_config: dict[str, Any] | None = None,
    resume: bool = False,
    device: str = "cpu",
    on_log: Callable[[dict[str, Any]], None] | None = None,
    val_data: Tensor | None = None,
    val_cond: Tensor | None = None,
    val_fn: Callable[[nn.Module, Tensor, Tensor | None], float] | None = None,
) -> TrainResult:
    """Train `model` on `data` with checkpoints in `run_dir`; see the module docstring.

    `resume=True` continues from the latest checkpoint in `run_dir` (or starts if there is
    none); `resume=False` refuses a `run_dir` that already holds checkpoints. Raises
    TrainingDiverged on a non-finite loss or gradient norm, leaving the last checkpoint intact.

    With `cfg.val_every > 0` the model is scored every `val_every` steps on `val_data`
    (`val_cond`), or, if none is given, on `cfg.val_fraction` of `data` held out from training
    (see `validation_score`; `val_fn` replaces the default mean loss). Validation data is
    ignored when `val_every == 0`. A new best score writes `checkpoints/best/`; after
    `cfg.patience` evaluations without improvement training stops (the final checkpoint is
    still written). With `cfg.select == "best"` the best weights (model and EMA) are loaded
    into `model` at the end and the result's `checkpoint` is `checkpoints/best`. The split
    by `val_fraction` is made even when `val_every == 0`, so what is trained on depends only
    on `val_fraction` and `seed`. Resuming a run that stopped early returns at once (unless
    `patience` was raised). After a kill, `best/` may be ahead of the resumed state; the
    replay rewrites it identically as long as the score is deterministic (the default is).
    """
    run_dir, run_config = Path(run_dir), dict(run_config or {})
    model.to(device)
    data = data.to(device)
    cond = None if cond is None else cond.to(device)
    val_data = None if val_data is None else val_data.to(device)
    val_cond = None if val_cond is None else val_cond.to(device)
    data, cond, val_data, val_cond = _validation_data(data, cond, val_data, val_cond, cfg)
    validate = cfg.val_every > 0
    state = TrainState.create(model, cfg)
    last = _prepare_run_dir(run_dir, resume, run_config)
    if last is not None:
        state.restore(last, cfg)
    metrics = _MetricsLog(run_dir / "metrics.jsonl", state.step, on_log)
    final_loss: float | None = None
    clock = CLOCKS[cfg.time_clock]
    # a resumed run that already stopped returns at once
    reason = ("patience" if state.patience_exhausted(cfg)
              else "time" if state.out_of_time(cfg) else "")  # fmt: skip
    with _progress_bar(cfg, state.step) as bar, metrics:
        try:
            mark = clock()
            for info in () if reason else iter_train(state, data, cfg, cond=cond):
                state.train_seconds += clock() - mark  # the step ran inside the iterator
                timed_out = state.out_of_time(cfg) and info.step < cfg.steps
                val = None
                if validate and (info.step % cfg.val_every == 0 or timed_out):
                    assert val_data is not None
                    val = _validate(state, cfg, val_data, val_cond, val_fn, run_dir, run_config)
                    reason = "patience" if state.patience_exhausted(cfg) else ""
                reason = reason or ("time" if timed_out else "")
                logged = _after_step(info, state, cfg, metrics, bar, val, force_log=bool(reason))
                final_loss = final_loss if logged is None else logged
                if info.step % cfg.checkpoint_every == 0 or info.step == cfg.steps or reason:
                    last = _save(run_dir, state, cfg, run_config)
                if reason:
                    break
                mark = clock()
        except TrainingDiverged as err:
            raise TrainingDiverged(f"{err}; last good checkpoint: {last or 'none'}") from None
    if last is None or ckpt.checkpoint_step(last) != state.step:
        last = _save(run_dir, state, cfg, run_config)
    final = last
    if cfg.select == "best":
        final = _load_best(run_dir, state) or last
    stopped = bool(reason) and state.step < cfg.steps
    return TrainResult(state.step, final_loss, final, run_dir, state.elapsed,
                       stopped_early=stopped and reason == "patience",
                       stop_reason=reason if stopped else "steps",
                       best_step=state.best_step, best_val=state.best_val)  # fmt: skip


def _validate(
    state: TrainState,
    cfg: TrainConfig,
    val_data: Tensor,
    val_cond: Tensor | None,
    val_fn: Callable[[nn.Module, Tensor, Tensor | None], float] | None,
    run_dir: Path,
    run_config: dict[str, Any],
) -> dict[str, Any]:
    """Score the model, book the score, write `best/` on improvement; return the log fields."""
    score = validation_score(
        state.model, val_data, val_cond, batch_size=cfg.batch_size, seed=cfg.val_seed,
        ema=state.ema if cfg.val_use_ema else None, val_fn=val_fn, bf16=cfg.bf16,
    )  # fmt: skip
    if state.record_validation(score):
        ckpt.save_best(
            run_dir, step=state.step, score=score, model_state=state.model.state_dict(),
            ema_state=state.ema.state_dict(), run_config=run_config,
        )  # fmt: skip
    return {"val_loss": score, "best_val_loss": state.best_val, "best_step": state.best_step}


def _load_best(run_dir: Path, state: TrainState) -> Path | None:
    """Load `best/` (model and EMA) into the state; None (weights untouched) if unusable."""
    best = ckpt.best_checkpoint(run_dir)
    if best is None or state.best_step is None:
        warnings.warn(f"{run_dir}: no best validation checkpoint; keeping the last weights",
                      stacklevel=3)  # fmt: skip
        return None
    if ckpt.read_best_info(best)["step"] != state.best_step:
        warnings.warn(f"{best} is not from the best step {state.best_step} of this run "
                      "(was the run resumed with fewer steps?); keeping the last weights",
                      stacklevel=3)  # fmt: skip
        return None
    ckpt.load_weights(best, state.model, ema=False)
    device = next(iter(state.ema.shadow.values())).device if state.ema.shadow else "cpu"
    state.ema.load_state_dict(ckpt.read_tensors(best / ckpt.EMA_FILE, device))
    return best


def _prepare_run_dir(run_dir: Path, resume: bool, run_config: dict[str, Any]) -> Path | None:
    """Create/clean `run_dir`, write its config.json; return the checkpoint to resume from."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.clean_temporaries(run_dir)
    last = ckpt.latest_checkpoint(run_dir)
    if last is not None and not resume:
        raise ConfigError(
            f"{run_dir} already holds checkpoints (latest {last.name}); "
            "resume the run or choose a new run directory"
        )
    ckpt.atomic_write(run_dir / ckpt.CONFIG_FILE, ckpt.json_bytes(run_config))
    return last


def _save(run_dir: Path, state: TrainState, cfg: TrainConfig, run_config: dict[str, Any]) -> Path:
    return ckpt.save_checkpoint(
        run_dir, state.step,
        model_state=state.model.state_dict(), ema_state=state.ema.state_dict(),
        trainer_state=state.trainer_state(cfg), run_config=run_config,
        keep=cfg.keep_checkpoints,
    )  # fmt: skip


def _after_step(
    info: StepInfo,
    state: TrainState,
    cfg: TrainConfig,
    metrics: _MetricsLog,
    bar: Any,
    val: dict[str, Any] | None = None,
    *,
    force_log: bool = False,
) -> float | None:
    """Accumulate timing and the window loss; on log steps log and return the window loss.

    Validation fields `val` go into the same line (a line of their own off log steps).
    """
    now = time.perf_counter()
    state.elapsed += now - metrics.last_time
    metrics.last_time = now
    metrics.window_loss += info.loss
    metrics.window_steps += 1
    loss = None
    if force_log or info.step % cfg.log_every == 0 or info.step == cfg.steps:
        loss = metrics.log(info, state.elapsed, val)
    elif val is not None:
        metrics.log_validation(info, state.elapsed, val)
    if bar is not None:
        bar.update(0, advance=1, **({} if loss is None else metrics.bar_fields))
    return loss


class _MetricsLog:
    """Appends one JSON line per log step; on open drops lines past the resumed step."""

    def __init__(self, path: Path, step: int, on_log: Callable[[dict], None] | None) -> None:
        self.path, self.on_log = path, on_log
        _truncate_metrics(path, step)
        self.window_loss: Tensor | float = 0.0
        self.window_steps = 0
        self.last_time = self.window_start = time.perf_counter()
        self.bar_fields: dict[str, str] = {}

    def __enter__(self) -> _MetricsLog:
        self.file = open(self.path, "a")
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def log(self, info: StepInfo, elapsed: float, val: dict[str, Any] | None = None) -> float:
        now = time.perf_counter()
        loss = float(self.window_loss) / self.window_steps
        record = {"step": info.step, "loss": loss, "lr": info.lr,
                  "grad_norm": float(info.grad_norm),
                  "steps_per_s": self.window_steps / max(now - self.window_start, 1e-9),
                  "elapsed": elapsed, **(val or {})}  # fmt: skip
        self._write(record)
        self.window_loss, self.window_steps, self.window_start = 0.0, 0, now
        self.bar_fields = {"loss": f"{loss:.4g}", "rate": f"{record['steps_per_s']:.1f}"}
        if self.on_log is not None:
            self.on_log(record)
        return loss

    def log_validation(self, info: StepInfo, elapsed: float, val: dict[str, Any]) -> None:
        """A line with only the validation fields (an evaluation step that is no log step)."""
        record = {"step": info.step, **val, "elapsed": elapsed}
        self._write(record)
        if self.on_log is not None:
            self.on_log(record)

    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only complete JSON lines with step <= `step` (no duplicates after a resume)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line + "\n")
    ckpt.atomic_write(path, "".join(kept).encode())


@contextlib.contextmanager
def _progress_bar(cfg: TrainConfig, start: int) -> Iterator[Any]:
    """A rich progress bar (task id 0), or None when disabled or stdout is not a terminal."""
    if not (cfg.progress and sys.stdout.isatty()):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}  {task.fields[rate]} steps/s"))  # fmt: skip
    with Progress(*columns) as bar:
        bar.add_task("train", total=cfg.steps, completed=start, loss="-", rate="-")
        yield bar
