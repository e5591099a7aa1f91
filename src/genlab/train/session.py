"""One call of `fit` once the run is set up: the loop, checkpoints, validation, the result.

In a data-parallel run every rank runs the session; rank 0 alone writes metrics, checkpoints
and `best/`, scores validation (the score is broadcast, so every rank books it and stops at
the same step) and its clock decides the time budget.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import TrainingDiverged
from genlab.train import checkpoint as ckpt
from genlab.train.config import TrainConfig
from genlab.train.distributed import Parallel
from genlab.train.log import MetricsLog, progress_bar
from genlab.train.loop import StepInfo, iter_train
from genlab.train.state import TrainState
from genlab.train.validation import validation_score

ValFn = Callable[[nn.Module, Tensor, Tensor | None], float]
OnLog = Callable[[dict[str, Any]], None]


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


@dataclass
class Validation:
    """What validation scores: held-out data and an optional score function."""

    data: Tensor | None
    cond: Tensor | None
    fn: ValFn | None


@dataclass
class Session:
    """The training loop of one `fit` call with its checkpoints and validation."""

    run_dir: Path
    cfg: TrainConfig
    state: TrainState
    run_config: dict[str, Any]
    parallel: Parallel
    device: torch.device
    last: Path | None  # the newest checkpoint

    def train(
        self, data: Tensor, cond: Tensor | None, val: Validation, on_log: OnLog | None
    ) -> tuple[str, float | None]:
        """Train until cfg.steps or a stop; return (stop reason or "", the last logged loss)."""
        cfg, state, main = self.cfg, self.state, self.parallel.world.is_main
        metrics = MetricsLog(self.run_dir / "metrics.jsonl" if main else None, state.step,
                             on_log if main else None)  # fmt: skip
        final_loss: float | None = None
        # a resumed run that already stopped returns at once
        reason = ("patience" if state.patience_exhausted(cfg)
                  else "time" if state.out_of_time(cfg) else "")  # fmt: skip
        steps = () if reason else iter_train(state, data, cfg, cond=cond, parallel=self.parallel)
        with progress_bar(cfg, state.step, enabled=main) as bar, metrics:
            try:
                clock = cfg.clock()
                mark = clock()
                for info in steps:
                    reason, val_log = self._after_step(info, clock() - mark, val)
                    logged = _log_step(info, state, cfg, metrics, bar, val_log,
                                       force_log=bool(reason))  # fmt: skip
                    final_loss = final_loss if logged is None else logged
                    if info.step % cfg.checkpoint_every == 0 or info.step == cfg.steps or reason:
                        self.save()
                    if reason:
                        break
                    mark = clock()
            except TrainingDiverged as err:
                last = self.last or "none"
                raise TrainingDiverged(f"{err}; last good checkpoint: {last}") from None
        return reason, final_loss

    def _after_step(
        self, info: StepInfo, seconds: float, val: Validation
    ) -> tuple[str, dict[str, Any] | None]:
        """Book the step's time, validate when due; return (stop reason or "", val fields)."""
        cfg, state = self.cfg, self.state
        state.train_seconds += seconds  # the step ran inside the iterator
        if cfg.max_seconds > 0:  # rank 0's clock decides
            state.train_seconds = self.parallel.broadcast(state.train_seconds, self.device)
        timed_out = state.out_of_time(cfg) and info.step < cfg.steps
        reason, val_log = "", None
        if cfg.val_every > 0 and (info.step % cfg.val_every == 0 or timed_out):
            val_log = self._validate(val)
            reason = "patience" if state.patience_exhausted(cfg) else ""
        return reason or ("time" if timed_out else ""), val_log

    def _validate(self, val: Validation) -> dict[str, Any]:
        """Score the model (on rank 0; the score is broadcast), book the score, write `best/`
        on improvement; return the log fields."""
        cfg, state, main = self.cfg, self.state, self.parallel.world.is_main
        assert val.data is not None
        score = 0.0
        if main:
            score = validation_score(
                state.model, val.data, val.cond, batch_size=cfg.batch_size, seed=cfg.val_seed,
                ema=state.ema if cfg.val_use_ema else None, val_fn=val.fn, bf16=cfg.bf16,
            )  # fmt: skip
        score = self.parallel.broadcast(score, self.device)
        if state.record_validation(score) and main:
            ckpt.save_best(
                self.run_dir, step=state.step, score=score,
                model_state=state.model.state_dict(), ema_state=state.ema.state_dict(),
                run_config=self.run_config,
            )  # fmt: skip
        return {"val_loss": score, "best_val_loss": state.best_val, "best_step": state.best_step}

    def save(self) -> None:
        """Write a checkpoint of the current step, pruning old ones (rank 0 writes)."""
        state = self.state
        if not self.parallel.world.is_main:
            self.last = self.run_dir / ckpt.CHECKPOINTS / ckpt.step_dir_name(state.step)
            return
        self.last = ckpt.save_checkpoint(
            self.run_dir, state.step,
            model_state=state.model.state_dict(), ema_state=state.ema.state_dict(),
            trainer_state=state.trainer_state(self.cfg), run_config=self.run_config,
            keep=self.cfg.keep_checkpoints,
        )  # fmt: skip

    def finish(self, reason: str, final_loss: float | None) -> TrainResult:
        """Write the final checkpoint, load the best weights if selected; the result."""
        state, cfg = self.state, self.cfg
        if self.last is None or ckpt.checkpoint_step(self.last) != state.step:
            self.save()
        assert self.last is not None
        self.parallel.barrier()  # rank 0's files are complete
        final = self.last
        if cfg.select == "best":
            final = _load_best(self.run_dir, state, warn=self.parallel.world.is_main) or final
        stopped = bool(reason) and state.step < cfg.steps
        return TrainResult(state.step, final_loss, final, self.run_dir, state.elapsed,
                           stopped_early=stopped and reason == "patience",
                           stop_reason=reason if stopped else "steps",
                           best_step=state.best_step, best_val=state.best_val)  # fmt: skip


def _load_best(run_dir: Path, state: TrainState, *, warn: bool) -> Path | None:
    """Load `best/` (model and EMA) into the state; None (weights untouched) if unusable."""
    best = ckpt.best_checkpoint(run_dir)
    problem = None
    if best is None or state.best_step is None:
        problem = f"{run_dir}: no best validation checkpoint; keeping the last weights"
    elif ckpt.read_best_info(best)["step"] != state.best_step:
        problem = (f"{best} is not from the best step {state.best_step} of this run "
                   "(was the run resumed with fewer steps?); keeping the last weights")  # fmt: skip
    if problem is not None or best is None:
        if warn:
            warnings.warn(problem, stacklevel=4)
        return None
    state.load_weights(best)
    return best


def _log_step(
    info: StepInfo,
    state: TrainState,
    cfg: TrainConfig,
    metrics: MetricsLog,
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
