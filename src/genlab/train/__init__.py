"""The family-agnostic trainer: `fit` / `iter_train` over any module with `loss(x, cond)`."""

from genlab.train.checkpoint import latest_checkpoint, load_weights
from genlab.train.ema import EMA
from genlab.train.trainer import (
    StepInfo,
    TrainConfig,
    TrainResult,
    TrainState,
    derive_seed,
    fit,
    iter_train,
    train_step,
    warmup_lr,
)

__all__ = [
    "EMA",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "derive_seed",
    "fit",
    "iter_train",
    "latest_checkpoint",
    "load_weights",
    "train_step",
    "warmup_lr",
]
