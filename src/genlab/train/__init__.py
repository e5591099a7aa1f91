"""The family-agnostic trainer: `fit` / `iter_train` over any module with `loss(x, cond)`."""

from genlab.train.checkpoint import best_checkpoint, latest_checkpoint, load_weights
from genlab.train.ema import EMA
from genlab.train.trainer import (
    StepInfo,
    TrainConfig,
    TrainResult,
    TrainState,
    derive_seed,
    fit,
    iter_train,
    split_validation,
    train_step,
    validation_score,
    warmup_lr,
)

__all__ = [
    "EMA",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "best_checkpoint",
    "derive_seed",
    "fit",
    "iter_train",
    "latest_checkpoint",
    "load_weights",
    "split_validation",
    "train_step",
    "validation_score",
    "warmup_lr",
]
