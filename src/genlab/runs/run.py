"""A run: the model of a config, trained into a run directory and loaded back from it
(the directory's `config.json` is written and read by `genlab.runs.record`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.config import RunConfig
from genlab.errors import ConfigError, DataError
from genlab.families import Family
from genlab.protocol import GenerativeModel
from genlab.runs import budget
from genlab.runs.data import Data, make_data, split_holdout
from genlab.runs.lock import run_lock
from genlab.runs.record import read_run_config, run_record
from genlab.train import TrainResult, best_checkpoint, fit, latest_checkpoint, load_weights
from genlab.train.checkpoint import check_fresh, named_checkpoint
from genlab.train.rundir import check_run_dir

__all__ = ["Run", "build_model", "load_run", "train_run"]

def build_model(cfg: RunConfig, shape: int | tuple[int, ...]) -> GenerativeModel:
    """The model of the config's family for examples of `shape`, wrapped in `Dequantized`
    when `data.dequantize` is set (a continuous density of the discrete pixels)."""
    from genlab.discrete import Dequantized

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    model = cfg.family.build(cfg, shape)
    if cfg.data.dequantize:
        levels = cfg.data.levels
        assert levels is not None  # checked by DataConfig: image sets only
        return Dequantized(model, levels, logit=cfg.data.logit)
    return model


def train_run(
    cfg: RunConfig,
    run_dir: Path | str,
    *,
    resume: bool = False,
    progress: bool | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[TrainResult, Data]:
    """Build data and model from `cfg` and train into `run_dir` (see `genlab.train.fit`).

    The run directory is locked while it trains (`genlab.runs.lock`: a second trainer
    fails naming the holder), checked for links leading outside it, and a fresh start
    (`resume=False`) is refused if it holds checkpoints, before anything in it changes.
    A family built on another run completes the config first (`Family.prepare`), so that
    the run directory records everything needed to rebuild the model. `on_log` receives
    every line of `metrics.jsonl` as it is written."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    with run_lock(run_dir):
        check_fresh(run_dir, resume)
        return _train(cfg, run_dir, resume=resume, progress=progress, on_log=on_log)


def _train(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool,
    progress: bool | None,
    on_log: Callable[[dict[str, Any]], None] | None,
) -> tuple[TrainResult, Data]:
    if cfg.family.prepare is not None:
        cfg = cfg.family.prepare(cfg)
    budget.check_data(cfg.data)
    data = make_data(cfg.data)
    budget.check_training(cfg, data.shape, data.train.nbytes + data.test.nbytes)
    torch.manual_seed(cfg.train.seed)  # the initial weights
    model = build_model(cfg, data.shape)
    top = -1 if data.train_labels is None else int(data.train_labels.max())
    if top >= cfg.model.num_classes > 0:
        raise ConfigError(f"model.num_classes: the data has labels up to {top} "
                          f"(got {cfg.model.num_classes})")  # fmt: skip
    train_cfg = cfg.train
    if progress is not None:
        train_cfg = train_cfg.model_copy(update={"progress": progress})
    train, train_y, val, val_y = split_holdout(data, cfg)
    val_fn = None
    if cfg.likelihood.select == "nll" and train_cfg.val_every > 0:
        val_fn = _nll_score(cfg)
    result = fit(model, train, train_cfg, run_dir, cond=train_y, val_data=val, val_cond=val_y,
                 val_fn=val_fn, run_config=run_record(cfg, data.shape), resume=resume,
                 on_log=on_log)  # fmt: skip
    return result, data


def _nll_score(cfg: RunConfig) -> Callable[[nn.Module, Tensor, Tensor | None], float]:
    """Validation by the test-time likelihood estimate (one draw): mean NLL in nats."""
    from genlab.eval.likelihood import nll

    bounds = cfg.family.likelihood
    if bounds is None:
        raise ConfigError(f"likelihood.select: model.family = {cfg.model.family!r} has no "
                          "likelihood to validate on")  # fmt: skip
    bound = bounds(cfg.likelihood)[-1]  # the tightest
    settings = cfg.likelihood.model_copy(update={"draws": 1})
    n = cfg.likelihood.val_n

    def score(model: nn.Module, x: Tensor, c: Tensor | None) -> float:
        x, c = x[:n], None if c is None else c[:n]
        return float(nll(model, x, settings, bound, cond=c, draws=1).mean())

    return score


@dataclass
class Run:
    """A trained run: its config and the model with EMA weights, in eval mode."""

    run_dir: Path
    config: RunConfig
    model: GenerativeModel
    shape: tuple[int, ...]
    checkpoint: Path

    @property
    def family(self) -> Family:
        return self.config.family

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def load_run(run_dir: Path | str, checkpoint: str | None = None) -> Run:
    """Rebuild the model of a trained run and load its EMA weights: those of `checkpoint`
    (`best`, `latest`, `step_<8 digits>` or a step number) if given, else of the
    best-validation checkpoint when the run selects on validation, else the latest.

    A broken weights file raises `CorruptCheckpoint` naming it (`genlab.train.checkpoint`
    lists the intact checkpoints to fall back to)."""
    run_dir = Path(run_dir)
    cfg, shape = read_run_config(run_dir)
    if checkpoint is not None:
        ckpt: Path | None = named_checkpoint(run_dir, checkpoint)
    else:
        best = best_checkpoint(run_dir) if cfg.train.select == "best" else None
        ckpt = best or latest_checkpoint(run_dir)
    if ckpt is None:
        raise DataError(f"{run_dir}: no checkpoint yet (train the run first)")
    budget.check_loading(cfg, shape)
    model = build_model(cfg, shape)
    load_weights(ckpt, model, ema=True)
    model.eval()
    return Run(run_dir, cfg, model, shape, ckpt)
