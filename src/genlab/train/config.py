"""`TrainConfig`: every option of `fit` and `iter_train`, declared once with its constraints.

It is both the argument of the trainer and the `[train]` section of a run config (TOML), so
each field's type, default and allowed range is stated only here; a bad value raises
pydantic's `ValidationError` naming the field, an unknown field too (`extra="forbid"`).
It is frozen: derive a changed copy with `cfg.model_copy(update={...})`.

TOML has no None, so `grad_clip = 0` turns clipping off. Checkpoints of older versions saved
`grad_clip = None` for that, and no `shards` (they trained with one stream per step);
`normalize_saved` reads them as 0 and 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genlab.errors import ConfigError


class TrainConfig(BaseModel):
    """Optimisation settings. `batch_size` is per micro-batch; a step sees grad_accum of them.

    `batch_size` counts the examples of a micro-batch over all processes of a data-parallel
    run: each of N processes takes `batch_size / N` of them. `shards` cuts every micro-batch
    into that many equal slices, each drawing its noise from its own stream; N processes
    take `shards / N` slices each, so the trajectory depends on `shards`, not on N
    (`genlab.train.distributed`). 0 means the number of processes at the start of the run
    (1 for a single process: one stream per step, as without sharding).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's, each in [0, 1)
    warmup_steps: int = Field(100, ge=0)  # linear warm-up, then constant
    grad_clip: float = Field(1.0, ge=0)  # clip the gradient norm to this; 0 = no clipping
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    ema_decay: float = Field(0.999, ge=0, lt=1)
    bf16: bool = False  # torch.autocast(device, dtype=bfloat16) around the loss
    seed: int = Field(0, ge=0)
    shards: int = Field(0, ge=0)  # slices of every micro-batch with their own noise; 0 = auto
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    progress: bool = True
    val_every: int = Field(0, ge=0)  # evaluate on validation data every this many steps; 0 = never
    patience: int = Field(0, ge=0)  # stop after this many evaluations without a new best; 0 = never
    val_seed: int = Field(12345, ge=0)  # seeds the global generators before each evaluation
    val_fraction: float = Field(0.0, ge=0, lt=1)  # > 0 and no val data given: carve this much
    select: Literal["last", "best"] = "last"  # weights fit leaves in the model (best: validation)
    val_use_ema: bool = True  # score the EMA weights (else the raw weights)
    max_seconds: float = Field(0.0, ge=0)  # > 0: stop after this much training time
    time_clock: Literal["wall", "cpu"] = "wall"  # clock of max_seconds ("cpu": process CPU time)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1) (got {list(v)})")
        return v

    @model_validator(mode="after")
    def _validation_needed(self) -> TrainConfig:
        if self.val_every == 0 and (self.patience > 0 or self.select == "best"):
            raise ValueError("patience > 0 and select = 'best' need val_every > 0")
        return self

    def clock(self) -> Callable[[], float]:
        """The clock of `max_seconds`: time.perf_counter ("wall") or time.process_time ("cpu")."""
        return time.process_time if self.time_clock == "cpu" else time.perf_counter

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain Python value (the form saved in a checkpoint)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`, also for older checkpoints (see `normalize_saved`).

        An unknown key raises ConfigError; a bad value pydantic's ValidationError.
        """
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown train setting(s): {', '.join(unknown)}")
        return cls(**normalize_saved(values))


def normalize_saved(values: dict[str, Any]) -> dict[str, Any]:
    """A saved `train_config` dict as this version spells it: grad_clip None becomes 0.0;
    a checkpoint from before sharding trained with shards = 1."""
    if "grad_clip" in values and values["grad_clip"] is None:
        values = {**values, "grad_clip": 0.0}
    if "shards" not in values:
        values = {**values, "shards": 1}
    return values
