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

Data-parallel (`genlab.train.distributed`): called in every process of a torch.distributed
job, `fit` trains one replica per process; the loop itself is `genlab.train.session`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.train import checkpoint as ckpt
from genlab.train.config import TrainConfig
from genlab.train.distributed import Parallel, World, resolve_shards
from genlab.train.loop import data_parallel
from genlab.train.session import Session, TrainResult, Validation
from genlab.train.state import TrainState
from genlab.train.validation import carve_validation

__all__ = ["TrainResult", "fit"]


def fit(
    model: nn.Module,
    data: Tensor,
    cfg: TrainConfig,
    run_dir: Path | str,
    *,
    cond: Tensor | None = None,
    run_config: dict[str, Any] | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
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

    In a torch.distributed job (e.g. started by torchrun) every rank calls `fit` with the same
    arguments; `data` is the whole training set on every rank (`genlab.train.distributed`).
    """
    run_dir, run_config, world = Path(run_dir), dict(run_config or {}), World.current()
    model.to(device)
    data = data.to(device)
    cond = None if cond is None else cond.to(device)
    val_data = None if val_data is None else val_data.to(device)
    val_cond = None if val_cond is None else val_cond.to(device)
    data, cond, val_data, val_cond = carve_validation(data, cond, val_data, val_cond, cfg)
    last = _prepare_run_dir(run_dir, resume, world)
    saved = None if last is None else ckpt.read_trainer_state(last)
    cfg = resolve_shards(cfg, None if saved is None else saved.get("train_config", {}), world)
    state = TrainState.create(model, cfg)
    if last is not None:
        state.restore(last, cfg, saved)
    if world.is_main:  # once the checkpoint is known to fit: a refused resume keeps config.json
        ckpt.atomic_write(run_dir / ckpt.CONFIG_FILE, ckpt.json_bytes(run_config))
    parallel = data_parallel(state, data, cond, cfg, world)
    session = Session(run_dir, cfg, state, run_config, parallel, data.device, last)
    reason, final_loss = session.train(data, cond, Validation(val_data, val_cond, val_fn), on_log)
    return session.finish(reason, final_loss)


def _prepare_run_dir(run_dir: Path, resume: bool, world: World) -> Path | None:
    """Create/clean `run_dir` (rank 0); return the checkpoint to resume from. Every rank
    decides the same from the same files."""
    ckpt.check_fresh(run_dir, resume)  # before anything in run_dir changes
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_temporaries(run_dir)
    last = ckpt.latest_checkpoint(run_dir)
    Parallel(world).barrier()  # the others read the checkpoint after rank 0 cleaned up
    return last


def resume_point(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run in `run_dir` continues from (None: it starts); ConfigError if
    `run_dir` holds checkpoints and `resume` is False."""
    ckpt.check_fresh(run_dir, resume)
    return ckpt.latest_checkpoint(run_dir)
