"""`TrainConfig`: the optimisation, checkpoint, validation and time-budget settings of `fit`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from genlab.errors import ConfigError

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
