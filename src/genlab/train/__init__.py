"""The family-agnostic trainer: `fit` / `iter_train` over any module with `loss(x, cond)`.

Modules, one concept each:

    config      `TrainConfig`, every training option
    seeding     per-step seeds and the batch order (why resume is bit-identical)
    state       `TrainState` and its round trip through a checkpoint
    loop        `train_step` / `iter_train`: the optimizer steps
    validation  validation data, the validation score, the carved split
    fitting     `fit`: checkpoints, validation, early stopping, the time budget
    log         the `metrics.jsonl` log and the progress bar
    checkpoint  atomic checkpoint directories
    ema         the exponential moving average of the weights
"""

from genlab.train.checkpoint import best_checkpoint, latest_checkpoint, load_weights
from genlab.train.config import TrainConfig
from genlab.train.ema import EMA
from genlab.train.fitting import TrainResult, fit
from genlab.train.loop import StepInfo, iter_train, train_step, warmup_lr
from genlab.train.seeding import derive_seed
from genlab.train.state import TrainState
from genlab.train.validation import split_validation, validation_score

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
