"""Validation: held-out data, a reproducible score, and a split carved from the training data.

Validation (`val_every > 0`, in `fit`): every `val_every` steps the model (its EMA weights if
`val_use_ema`) is scored on validation data, either given to `fit` or carved from the
training data (`val_fraction`, a split seeded by `seed`). Scoring runs in eval mode under
`no_grad` with the global generators seeded from `val_seed` (the same noise draws at every
evaluation) inside a forked RNG, so training is bit-identical to a run without validation
apart from where it stops. The best score is kept in `checkpoints/best/`; after `patience`
evaluations without improvement `fit` stops early. The bookkeeping is part of the trainer
state, so resume stays exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.train.config import TrainConfig
from genlab.train.ema import EMA
from genlab.train.loop import per_example_loss
from genlab.train.seeding import derive_seed, preserved_rng, seed_step


def split_validation(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic split of range(n): (train indices, validation indices), both sorted.

    round(fraction * n) rows (at least 1, at most n - 1) go to validation, chosen by a
    permutation seeded from (seed, "val_split"); the two parts are disjoint and cover range(n).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ConfigError(f"cannot carve a validation split out of {n} training example(s)")
    n_val = min(n - 1, max(1, round(fraction * n)))
    gen = torch.Generator().manual_seed(derive_seed(seed, "val_split", 0))
    perm = torch.randperm(n, generator=gen)  # (n,)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def carve_validation(
    data: Tensor,
    cond: Tensor | None,
    val_data: Tensor | None,
    val_cond: Tensor | None,
    cfg: TrainConfig,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(train data, train cond, val data, val cond): carve a split if asked and none is given."""
    if val_data is None and val_cond is not None:
        raise ValueError("val_cond given without val_data")
    if val_data is None and cfg.val_fraction > 0:
        if cond is not None and cond.shape[0] != data.shape[0]:
            raise ValueError(f"cond has {cond.shape[0]} rows but data has {data.shape[0]}")
        train_idx, val_idx = split_validation(data.shape[0], cfg.val_fraction, cfg.seed)
        train_idx, val_idx = train_idx.to(data.device), val_idx.to(data.device)
        val_data, data = data[val_idx], data[train_idx]
        if cond is not None:
            val_cond, cond = cond[val_idx], cond[train_idx]
    if cfg.val_every > 0 and val_data is None:
        raise ConfigError("train.val_every > 0 needs val_data or train.val_fraction > 0")
    if val_data is not None and val_cond is not None and val_cond.shape[0] != val_data.shape[0]:
        raise ValueError(f"val_cond has {val_cond.shape[0]} rows but val_data has "
                         f"{val_data.shape[0]}")  # fmt: skip
    return data, cond, val_data, val_cond


@torch.no_grad()
def validation_score(
    model: nn.Module,
    val_data: Tensor,
    val_cond: Tensor | None = None,
    *,
    batch_size: int,
    seed: int = 12345,
    ema: EMA | None = None,
    val_fn: Callable[[nn.Module, Tensor, Tensor | None], float] | None = None,
    bf16: bool = False,
) -> float:
    """Validation score of `model` (with the weights of `ema` swapped in, if given).

    The default score is the mean of `model.loss` over all of `val_data`, in chunks of
    `batch_size` rows; `val_fn(model, val_data, val_cond)` replaces it. Either runs in eval
    mode under `no_grad`, after seeding the global generators with `seed`, so a stochastic
    loss sees the same draws at every call. Afterwards the generator states, the weights and
    the train/eval mode are exactly as before.
    """
    training = model.training
    backup = None
    with preserved_rng(val_data.device):
        try:
            if ema is not None:
                backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
                ema.copy_to(model)
            model.eval()
            seed_step(seed, val_data.device)
            if val_fn is not None:
                return float(val_fn(model, val_data, val_cond))
            return _mean_loss(model, val_data, val_cond, batch_size, bf16)
        finally:
            if backup is not None:
                model.load_state_dict(backup)
            model.train(training)


def _mean_loss(
    model: nn.Module, data: Tensor, cond: Tensor | None, batch_size: int, bf16: bool
) -> float:
    """Mean per-example loss over `data`, in chunks of `batch_size` rows, summed in float64."""
    n = data.shape[0]
    if n == 0:
        raise ValueError("validation data is empty")
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    for start in range(0, n, batch_size):
        x = data[start : start + batch_size]
        c = None if cond is None else cond[start : start + batch_size]
        total += per_example_loss(model, x, c, bf16).double().sum()
    return float(total) / n
