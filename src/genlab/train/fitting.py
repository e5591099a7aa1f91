"""`fit`: train with checkpoints, metrics, validation, a time budget and exact resume.

`fit` drives `iter_train` (`genlab.train.loop`), writes checkpoints (`genlab.train.checkpoint`),
validates (`genlab.train.validation`) and logs (`genlab.train.log`). A run killed at any
moment resumes bit-identically from its latest checkpoint (`genlab.train.seeding`).

Time budget (`max_seconds > 0`, in `fit`): training stops after that many seconds spent in
optimizer steps (validation, logging and checkpoints are not counted), measured on the
`time_clock`: "wall" (time.perf_counter) or "cpu" (this process's CPU time, steadier than
wall time on a shared machine). The seconds used are part of the trainer state, so a resumed
run continues the same budget; where a timed run stops depends on the machine, so such runs
are reproducible only up to their stopping step.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from genlab.errors import TrainingDiverged
from genlab.train import checkpoint as ckpt
from genlab.train.config import TrainConfig
from genlab.train.log import MetricsLog, progress_bar
from genlab.train.loop import StepInfo, iter_train
from genlab.train.state import TrainState
from genlab.train.validation import carve_validation, validation_score


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
    data, cond, val_data, val_cond = carve_validation(data, cond, val_data, val_cond, cfg)
    validate = cfg.val_every > 0
    state = TrainState.create(model, cfg)
    last = _prepare_run_dir(run_dir, resume)
    if last is not None:
        state.restore(last, cfg)
    # written once the checkpoint is known to fit: a refused resume keeps the old config.json
    ckpt.atomic_write(run_dir / ckpt.CONFIG_FILE, ckpt.json_bytes(run_config))
    metrics = MetricsLog(run_dir / "metrics.jsonl", state.step, on_log)
    final_loss: float | None = None
    clock = cfg.clock()
    # a resumed run that already stopped returns at once
    reason = ("patience" if state.patience_exhausted(cfg)
              else "time" if state.out_of_time(cfg) else "")  # fmt: skip
    with progress_bar(cfg, state.step) as bar, metrics:
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
    state.load_weights(best)
    return best


def _prepare_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """Create/clean `run_dir`; return the checkpoint to resume from."""
    ckpt.check_fresh(run_dir, resume)  # before anything in run_dir changes
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.clean_temporaries(run_dir)
    return ckpt.latest_checkpoint(run_dir)


def _save(run_dir: Path, state: TrainState, cfg: TrainConfig, run_config: dict[str, Any]) -> Path:
    """Write a checkpoint of the current step (pruning old ones); return its directory."""
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
