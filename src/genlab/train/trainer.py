"""The family-agnostic trainer: AdamW, linear warm-up, clipping, accumulation, EMA, bf16.

The trainer only calls `model.loss(x, cond) -> Tensor` of shape (B,) (per-example losses)
and reduces with the mean. `iter_train` is the training loop as a generator, so a caller owns
logging and stopping; `fit` adds checkpoints, metrics, a progress bar and exact resume.

Determinism without saved RNG state: every optimizer step starts with
`seed_step(derive_seed(seed, "step", step))` (the global CPU and device generators, as
`torch.manual_seed` would), so the model's own noise draws depend only on (seed, step);
batches come from a per-epoch permutation seeded by (seed, epoch).
A run resumed from a checkpoint is therefore bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
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
    "ema_decay", "bf16", "seed",
)  # fmt: skip


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
    checkpoint: Path  # the final checkpoint directory
    run_dir: Path
    elapsed: float  # seconds of training over all sessions of the run


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

    @classmethod
    def create(cls, model: nn.Module, cfg: TrainConfig) -> TrainState:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        return cls(model=model, optimizer=optimizer, ema=EMA(model, cfg.ema_decay))

    def trainer_state(self, cfg: TrainConfig) -> dict[str, Any]:
        """The part of the state saved in `trainer_state.pt` (weights go to safetensors)."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "elapsed": self.elapsed, "train_config": cfg.to_dict()}  # fmt: skip

    def restore(self, ckpt_dir: Path, cfg: TrainConfig) -> None:
        """Load weights, EMA and optimizer state from a checkpoint directory."""
        saved = ckpt.read_trainer_state(ckpt_dir)
        _check_same_trajectory(saved.get("train_config", {}), cfg, ckpt_dir)
        ckpt.load_weights(ckpt_dir, self.model, ema=False)
        device = next(iter(self.ema.shadow.values())).device if self.ema.shadow else "cpu"
        self.ema.load_state_dict(ckpt.read_tensors(ckpt_dir / ckpt.EMA_FILE, device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.elapsed = int(saved["step"]), float(saved.get("elapsed", 0.0))


def _check_same_trajectory(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    now = cfg.to_dict()
    for name in _TRAJECTORY_FIELDS:
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
    state.ema.update(model)
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
) -> TrainResult:
    """Train `model` on `data` with checkpoints in `run_dir`; see the module docstring.

    `resume=True` continues from the latest checkpoint in `run_dir` (or starts if there is
    none); `resume=False` refuses a `run_dir` that already holds checkpoints. Raises
    TrainingDiverged on a non-finite loss or gradient norm, leaving the last checkpoint intact.
    """
    run_dir, run_config = Path(run_dir), dict(run_config or {})
    model.to(device)
    data = data.to(device)
    cond = None if cond is None else cond.to(device)
    state = TrainState.create(model, cfg)
    last = _prepare_run_dir(run_dir, resume, run_config)
    if last is not None:
        state.restore(last, cfg)
    metrics = _MetricsLog(run_dir / "metrics.jsonl", state.step, on_log)
    final_loss: float | None = None
    with _progress_bar(cfg, state.step) as bar, metrics:
        try:
            for info in iter_train(state, data, cfg, cond=cond):
                logged = _after_step(info, state, cfg, metrics, bar)
                final_loss = final_loss if logged is None else logged
                if info.step % cfg.checkpoint_every == 0 or info.step == cfg.steps:
                    last = _save(run_dir, state, cfg, run_config)
        except TrainingDiverged as err:
            raise TrainingDiverged(f"{err}; last good checkpoint: {last or 'none'}") from None
    if last is None or ckpt.checkpoint_step(last) != state.step:
        last = _save(run_dir, state, cfg, run_config)
    return TrainResult(state.step, final_loss, last, run_dir, state.elapsed)


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
    info: StepInfo, state: TrainState, cfg: TrainConfig, metrics: _MetricsLog, bar: Any
) -> float | None:
    """Accumulate timing and the window loss; on log steps log and return the window loss."""
    now = time.perf_counter()
    state.elapsed += now - metrics.last_time
    metrics.last_time = now
    metrics.window_loss += info.loss
    metrics.window_steps += 1
    loss = None
    if info.step % cfg.log_every == 0 or info.step == cfg.steps:
        loss = metrics.log(info, state.elapsed)
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

    def log(self, info: StepInfo, elapsed: float) -> float:
        now = time.perf_counter()
        loss = float(self.window_loss) / self.window_steps
        record = {"step": info.step, "loss": loss, "lr": info.lr,
                  "grad_norm": float(info.grad_norm),
                  "steps_per_s": self.window_steps / max(now - self.window_start, 1e-9),
                  "elapsed": elapsed}  # fmt: skip
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.window_loss, self.window_steps, self.window_start = 0.0, 0, now
        self.bar_fields = {"loss": f"{loss:.4g}", "rate": f"{record['steps_per_s']:.1f}"}
        if self.on_log is not None:
            self.on_log(record)
        return loss


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
