"""The family-agnostic trainer: `fit` / `iter_train` over any module with `loss(x, cond)`.

Modules, one concept each:

    config      `TrainConfig`, every training option
    seeding     per-step (or per-shard) seeds and the batch order (why resume is bit-identical)
    state       `TrainState` and its round trip through a checkpoint
    loop        `train_step` / `iter_train`: the optimizer steps
    distributed data-parallel training on torch.distributed (DDP, launched by torchrun)
    validation  validation data, the validation score, the carved split
    fitting     `fit`: set-up, exact resume
    session     the loop of `fit`: checkpoints, validation, early stopping, the time budget
    log         the `metrics.jsonl` log and the progress bar
    checkpoint  atomic checkpoint directories
    checkpoint_io  reading checkpoint files, each checked against its digest
    rundir      no path of a run directory leads outside it
    ema         the exponential moving average of the weights
"""

from typing import TYPE_CHECKING

from genlab._lazy import lazy_exports

_EXPORTS = {
    "best_checkpoint": "genlab.train.checkpoint",
    "latest_checkpoint": "genlab.train.checkpoint",
    "load_weights": "genlab.train.checkpoint",
    "TrainConfig": "genlab.train.config",
    "Parallel": "genlab.train.distributed",
    "World": "genlab.train.distributed",
    "EMA": "genlab.train.ema",
    "TrainResult": "genlab.train.fitting",
    "fit": "genlab.train.fitting",
    "StepInfo": "genlab.train.loop",
    "data_parallel": "genlab.train.loop",
    "iter_train": "genlab.train.loop",
    "train_step": "genlab.train.loop",
    "warmup_lr": "genlab.train.loop",
    "derive_seed": "genlab.train.seeding",
    "TrainState": "genlab.train.state",
    "split_validation": "genlab.train.validation",
    "validation_score": "genlab.train.validation",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from genlab.train.checkpoint import best_checkpoint as best_checkpoint
    from genlab.train.checkpoint import latest_checkpoint as latest_checkpoint
    from genlab.train.checkpoint import load_weights as load_weights
    from genlab.train.config import TrainConfig as TrainConfig
    from genlab.train.distributed import Parallel as Parallel
    from genlab.train.distributed import World as World
    from genlab.train.ema import EMA as EMA
    from genlab.train.fitting import TrainResult as TrainResult
    from genlab.train.fitting import fit as fit
    from genlab.train.loop import StepInfo as StepInfo
    from genlab.train.loop import data_parallel as data_parallel
    from genlab.train.loop import iter_train as iter_train
    from genlab.train.loop import train_step as train_step
    from genlab.train.loop import warmup_lr as warmup_lr
    from genlab.train.seeding import derive_seed as derive_seed
    from genlab.train.state import TrainState as TrainState
    from genlab.train.validation import split_validation as split_validation
    from genlab.train.validation import validation_score as validation_score
