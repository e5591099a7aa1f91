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
from genlab.runs.record import TRANSFORM_KEY, read_record, read_run_config, run_record
from genlab.runs.stage import fit_stage
from genlab.runs.text import caption_conditions
from genlab.train import TrainResult, best_checkpoint, fit, latest_checkpoint, load_weights
from genlab.train.checkpoint import check_fresh, named_checkpoint
from genlab.train.rundir import check_run_dir
from genlab.transform import ColumnTransform

__all__ = ["Run", "build_model", "load_run", "train_run"]

def build_model(
    cfg: RunConfig, shape: int | tuple[int, ...], transform: ColumnTransform | None = None
) -> GenerativeModel:
    """The model of the config's family for examples of `shape`, wrapped in `Dequantized`
    when `data.dequantize` is set (a continuous density of the discrete pixels) and in
    `Transformed` when vector data pass through a data `transform` (raw units in and out)."""
    from genlab.discrete import Dequantized
    from genlab.transform import Transformed

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    model = cfg.family.build(cfg, shape)
    if transform is not None:
        return Transformed(model, transform)
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
    device: str | torch.device = "cpu",
) -> tuple[TrainResult, Data]:
    """Build data and model from `cfg` and train into `run_dir` on `device` (see
    `genlab.train.fit`; in every process of a torch.distributed job, data-parallel).

    Vector data pass through the data transform stage fitted on the training rows
    (`genlab.runs.stage.fit_stage`): the model trains, samples and scores in raw units.
    A family built on another run completes the config first (`Family.prepare`), so that
    the run directory records everything needed to rebuild the model. `on_log` receives
    every line of `metrics.jsonl` as it is written. A text-conditioned
    run encodes its captions and evaluation prompts into the run's embedding cache first
    (`genlab.runs.text`) and trains on caption groups (`genlab.text.table.Captions`).

    The run directory is locked while it trains (`genlab.runs.lock`, rank 0: a second
    trainer fails naming the holder), checked for links leading outside it, and a fresh start
    (`resume=False`) is refused if it holds checkpoints, before anything in it changes."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    with run_lock(run_dir):
        check_fresh(run_dir, resume)
        return _train(cfg, run_dir, resume=resume, progress=progress, on_log=on_log,
                      device=device)  # fmt: skip


def _train(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool,
    progress: bool | None,
    on_log: Callable[[dict[str, Any]], None] | None,
    device: str | torch.device,
) -> tuple[TrainResult, Data]:
    if cfg.family.prepare is not None:
        cfg = cfg.family.prepare(cfg)
    budget.check_data(cfg.data)
    data = make_data(cfg.data)
    budget.check_training(cfg, data.shape, data.train.nbytes + data.test.nbytes)
    columns = fit_stage(cfg, data)
    transform = None if columns is None else ColumnTransform.from_stats(columns)
    torch.manual_seed(cfg.train.seed)  # the initial weights
    model = build_model(cfg, data.shape, transform)
    top = -1 if data.train_labels is None else int(data.train_labels.max())
    if top >= cfg.model.num_classes > 0:
        raise ConfigError(f"model.num_classes: the data has labels up to {top} "
                          f"(got {cfg.model.num_classes})")  # fmt: skip
    train_cfg = cfg.train
    if progress is not None:
        train_cfg = train_cfg.model_copy(update={"progress": progress})
    train, train_y, val, val_y = split_holdout(data, cfg)
    if cfg.text is not None:
        train_y, val_y = caption_conditions(cfg, data, run_dir, train_y, val_y)
    val_fn = None
    if cfg.likelihood.select == "nll" and train_cfg.val_every > 0:
        val_fn = _nll_score(cfg)
    result = fit(model, train, train_cfg, run_dir, cond=train_y, val_data=val, val_cond=val_y,
                 val_fn=val_fn, run_config=run_record(cfg, data.shape, columns), resume=resume,
                 on_log=on_log, device=device)  # fmt: skip
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
    columns: dict[str, Any] | None = None  # the data transform's record (config.json)

    @property
    def family(self) -> Family:
        return self.config.family

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def header(self) -> list[str] | None:
        """The column names of the run's data file, when it had a header line."""
        cols = self.columns or {}
        return list(cols["names"]) if cols.get("header") else None

    def column_decimals(self) -> list[int | None] | None:
        """Decimals of each grid column of the run's data (None: continuous), for writing
        samples as the file held them; None without a data transform."""
        from genlab.data.columns import decimals
        from genlab.transform import Transformed

        if not isinstance(self.model, Transformed):
            return None
        steps = self.model.transform.step.tolist()
        return [decimals(s) if s > 0 else None for s in steps]

    def metric_space(self) -> Callable[[Tensor], Tensor] | None:
        """Raw rows to the standardised coordinates sample metrics compare in (runs with a
        data transform), None to compare in the data's own units."""
        from genlab.transform import Transformed

        return self.model.standardize if isinstance(self.model, Transformed) else None


def load_run(run_dir: Path | str, checkpoint: str | None = None) -> Run:
    """Rebuild the model of a trained run and load its EMA weights: those of `checkpoint`
    (`best`, `latest`, `step_<8 digits>` or a step number) if given, else of the
    best-validation checkpoint when the run selects on validation, else the latest. A data
    transform recorded in config.json is rebuilt and its statistics loaded with the weights.

    A broken weights file raises `CorruptCheckpoint` naming it (`genlab.train.checkpoint`
    lists the intact checkpoints to fall back to)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    cfg, shape = read_run_config(run_dir, record)
    if checkpoint is not None:
        ckpt: Path | None = named_checkpoint(run_dir, checkpoint)
    else:
        best = best_checkpoint(run_dir) if cfg.train.select == "best" else None
        ckpt = best or latest_checkpoint(run_dir)
    if ckpt is None:
        raise DataError(f"{run_dir}: no checkpoint yet (train the run first)")
    budget.check_loading(cfg, shape)
    columns = record.get(TRANSFORM_KEY)
    transform = None
    if columns is not None:
        whiten = columns.get("scaling") == "whiten"
        transform = ColumnTransform(math.prod(shape), whiten=whiten)
    model = build_model(cfg, shape, transform)
    load_weights(ckpt, model, ema=True)
    model.eval()
    return Run(run_dir, cfg, model, shape, ckpt, columns)
