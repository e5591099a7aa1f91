"""What the diffusion core does with a condition, whatever its type.

A condition travels in the single `cond` argument of a denoiser and a network. It is either
a (B,) tensor of class labels or a value with the small batch interface below, such as
`genlab.nets.context.Context` (token vectors, padding mask, pooled vector) or a lazily
resolved one such as `genlab.text.table.Captions` (per-example caption groups into a table
of cached text embeddings, which the trainer indexes like a tensor):

- ``len(c)``, ``c[index]``: its batch;
- ``type(c).cat([a, b])``: two batches in one (classifier-free guidance runs both branches
  in one network call); ``c.expand(n)``: one row serving n examples;
- optionally ``c.dropped(mask, null)``: rows under `mask` replaced by the null condition
  (label / caption dropout of Ho & Salimans 2022, Alg. 1), and ``c.resolve(training)``:
  the value the network takes (a random caption of each group while training).

Tensors (labels, embeddings) get the same operations from torch, and a dict of conditions
(the keyword arguments of a foreign network, e.g. a diffusers UNet) gets them key by key, so
guidance and the model's loss have one implementation for every kind of condition.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["batch_size", "concat", "drop", "expand", "expand_like", "resolve", "rows"]


def batch_size(cond: Any) -> int:
    """The number of examples a condition holds."""
    if isinstance(cond, dict):
        return batch_size(next(iter(cond.values())))
    return int(cond.shape[0]) if isinstance(cond, Tensor) else len(cond)


def rows(cond: Any, index: Any) -> Any:
    """The rows `index` (a slice or an index tensor) of a condition: of a tensor of labels
    or embeddings, of a value with the batch interface, of a dict key by key. None and a
    scalar (one condition for any batch) are returned unchanged."""
    if cond is None or (isinstance(cond, Tensor) and cond.ndim == 0):
        return cond
    if isinstance(cond, dict):
        return {k: rows(v, index) for k, v in cond.items()}
    if isinstance(cond, Tensor) and isinstance(index, Tensor):
        index = index.to(cond.device)
    return cond[index]


def concat(a: Any, b: Any) -> Any:
    """Two conditions of one kind stacked along the batch (a first)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            raise ValueError(f"conditions with keys {sorted(a)} and {sorted(b)} do not batch")
        return {k: concat(a[k], b[k]) for k in a}
    if isinstance(a, Tensor):
        return torch.cat([a, torch.as_tensor(b, device=a.device)])
    if type(a) is not type(b):
        raise ValueError(f"cannot batch a {type(a).__name__} with a {type(b).__name__} "
                         "condition (give the unconditional branch the same kind)")  # fmt: skip
    return type(a).cat([a, b])


def expand(cond: Any, n: int) -> Any:
    """A condition for a batch of n: itself, or its single row repeated."""
    if isinstance(cond, Tensor):
        if cond.shape[0] not in (1, n):
            raise ValueError(f"a condition of {cond.shape[0]} rows cannot serve a batch of {n}")
        return cond.expand(n, *cond.shape[1:])
    return cond.expand(n)


def expand_like(cond: Any, like: Any) -> Any:
    """`cond` for the batch of `like` (same kind): itself, its single row repeated, or, for a
    tensor of one example's shape (like.shape[1:]), that example repeated; dicts key by key."""
    if isinstance(cond, dict) and isinstance(like, dict):
        if set(cond) != set(like):
            raise ValueError(f"condition keys {sorted(cond)} differ from {sorted(like)}")
        return {k: expand_like(cond[k], like[k]) for k in like}
    n = batch_size(like)
    if isinstance(cond, Tensor) and isinstance(like, Tensor):
        cond = cond.to(like.device)
        if cond.shape == like.shape[1:]:
            cond = cond.unsqueeze(0)
    return expand(cond, n)


def drop(cond: Any, mask: Tensor, null: int) -> Any:
    """Rows of `cond` under `mask` (B,) bool replaced by the null condition: the label `null`,
    or what the condition's own `dropped` means by it (the empty caption)."""
    if isinstance(cond, Tensor):
        return torch.where(mask, torch.full_like(cond, null), cond)
    if not hasattr(cond, "dropped"):
        raise ValueError(f"a {type(cond).__name__} condition cannot be dropped")
    return cond.dropped(mask, null)


def resolve(cond: Any, training: bool) -> Any:
    """The value the network takes: a lazily resolved condition resolved (with training-time
    randomness when `training`), anything else as it is."""
    return cond.resolve(training) if hasattr(cond, "resolve") else cond
