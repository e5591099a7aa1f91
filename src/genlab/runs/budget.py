"""What a run would allocate, estimated before anything is allocated.

A config asking for terabytes (a crafted `config.json`, three zeros too many in a size)
must fail with one line naming the key to change, not in the allocator or by the kernel's
out-of-memory killer. Before genlab builds data, a model or a batch of samples, it adds up
what they will hold and refuses what exceeds `genlab.memory.memory_limit()`:

- the model: the bytes of its parameters and buffers, counted on a model built on the
  `meta` device (shapes without storage: nothing is allocated). Training holds each
  parameter five times (weights, gradient, two AdamW moments, the EMA copy) and each buffer
  twice (model and EMA); loading holds both once more while the weights are read.
- the data: vector sets made from the config hold (n_train + n_test) points (generated in
  float64 and kept in float32); files are sized by the loaders themselves.
- a batch: the bytes the forward of the family's loss creates per example, measured by
  running it on the `meta` device at batch sizes 1 and 2 (views excluded). A family whose
  loss cannot run there (data-dependent control flow: the CNF's adaptive solver, Glow's
  data-dependent ActNorm initialisation) is bounded below by four copies of an example.
- sampling n examples at once: a few copies of the state and of the largest tensor the
  forward creates per example (sampling keeps no graph).

The estimate is deliberately simple: it catches what can never fit, not every run that
would come close. Every built-in family builds on `meta` (`tests/test_budget.py` checks
that the counts equal the real model's); a family registered from outside that cannot is
not estimated.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from genlab import registry
from genlab.config import DataConfig, RunConfig
from genlab.errors import ConfigError
from genlab.memory import format_bytes, memory_limit

__all__ = ["Footprint", "check_data", "check_loading", "check_sampling", "check_training",
           "footprint"]  # fmt: skip

FLOAT = 4  # bytes of a float32
TRAIN_COPIES = 5  # weights, gradient, two AdamW moments, EMA
FLOOR_COPIES = 4  # copies of an example a loss creates at least (unmeasured families)
SAMPLE_COPIES = (6, 3)  # copies of an example and of the largest tensor while sampling


@dataclass(frozen=True)
class Part:
    """One thing a run allocates: the key that sizes it, what it is, its bytes."""

    key: str
    what: str
    bytes: float


def _check(parts: list[Part], doing: str) -> None:
    """ConfigError naming the largest part if all of them exceed the memory limit."""
    total, limit = sum(p.bytes for p in parts), memory_limit()
    if total <= limit:
        return
    worst = max(parts, key=lambda p: p.bytes)
    raise ConfigError(f"{worst.key}: {worst.what} needs about {format_bytes(worst.bytes)}; "
                      f"{doing} needs about {format_bytes(total)} in all, more than the "
                      f"{format_bytes(limit)} of memory this process may use")  # fmt: skip


class _Meter(TorchDispatchMode):
    """Bytes of the tensors the ops in its scope create (views and in-place results are
    not new memory), and the largest of them."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    size = t.numel() * t.element_size()
                    self.total, self.largest = self.total + size, max(self.largest, size)
        return out


@dataclass(frozen=True)
class Footprint:
    """The sizes of a model, in bytes: parameters, buffers, and per example the tensors
    one forward of its loss creates and the largest of them."""

    params: int
    buffers: int
    per_example: float
    largest: float
    n_params: int


def _forward_bytes(model: Any, shape: tuple[int, ...], classes: int) -> tuple[float, float]:
    """(all, largest) bytes the loss's forward creates per example, measured on `meta`."""
    example = math.prod(shape) * FLOAT
    meters = []
    try:
        for b in (1, 2):
            x = torch.zeros(b, *shape, device="meta")
            c = torch.zeros(b, dtype=torch.long, device="meta") if classes else None
            with torch.no_grad(), _Meter() as meter:
                model.loss(x, c)
            meters.append(meter)
    except (RuntimeError, NotImplementedError):  # .item() or an op without a meta kernel
        return FLOOR_COPIES * example, example
    per = meters[1].total - meters[0].total
    return max(per, FLOOR_COPIES * example), max(meters[1].largest - meters[0].largest, example)


_importing = threading.local()


def _on_cpu(load: Callable[..., Any]) -> Callable[..., Any]:
    def imported(*args: Any, **kwargs: Any) -> Any:
        if getattr(_importing, "active", False):  # entering the device context imports too
            return load(*args, **kwargs)
        _importing.active = True
        try:
            with torch.device("cpu"):
                return load(*args, **kwargs)
        finally:
            _importing.active = False

    return imported


@contextlib.contextmanager
def _imports_on_cpu() -> Iterator[None]:
    """Run the body of every module imported in this block with the CPU as default device.

    Families import their code on first use, so building on `meta` may be what first
    imports a module; tensors it creates at import time (torchdiffeq's Butcher tableaus,
    say) would otherwise live on `meta` for good, and every later real model would fail."""
    real_import, real_import_module = builtins.__import__, importlib.import_module
    builtins.__import__ = _on_cpu(real_import)
    importlib.import_module = _on_cpu(real_import_module)  # type: ignore[assignment]
    try:
        yield
    finally:
        builtins.__import__, importlib.import_module = real_import, real_import_module


def _model_key(cfg: RunConfig) -> str:
    return "net" if cfg.net is not None else cfg.family.table


def footprint(cfg: RunConfig, shape: tuple[int, ...]) -> Footprint | None:
    """The model's sizes, from a model built on the `meta` device (nothing is allocated).

    Sizes whose byte counts overflow 64 bits are refused at once (ConfigError); a family
    that cannot build on `meta` (none of genlab's: a contract test checks) gives None."""
    from genlab.runs.run import build_model

    try:
        with torch.device("meta"), _imports_on_cpu():
            model: Any = build_model(cfg, shape)
    except (RuntimeError, NotImplementedError) as err:
        if "overflow" in str(err):  # e.g. "Storage size calculation overflowed with sizes=..."
            raise ConfigError(f"{_model_key(cfg)}: the model ({cfg.family.describe(cfg)}) has "
                              "tensors too large to count in 64 bits") from None  # fmt: skip
        if "meta" in str(err):  # e.g. ".item() cannot be called on meta tensors"
            return None
        raise
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    n_params = sum(p.numel() for p in model.parameters())
    per_example, largest = _forward_bytes(model, shape, cfg.model.num_classes)
    return Footprint(params, buffers, per_example, largest, n_params)


def _model_part(cfg: RunConfig, fp: Footprint, copies: int, why: str) -> Part:
    key = _model_key(cfg)
    what = f"the model ({fp.n_params:.3g} parameters: {cfg.family.describe(cfg)}){why}"
    return Part(key, what, copies * fp.params + 2 * fp.buffers)


def check_data(cfg: DataConfig) -> None:
    """Refuse vector data the config makes (toy sets, gmm-ring) that cannot fit."""
    if cfg.is_image or cfg.name == registry.POINTS:
        return  # read from a file: the loaders size it
    n_train, n_test = cfg.vector_sizes()
    key = "data.n_train" if n_train >= n_test else "data.n_test"
    what = f"making {n_train + n_test:.3g} points"
    _check([Part(key, what, (n_train + n_test) * 2 * (8 + FLOAT))], "the data")


def check_training(cfg: RunConfig, shape: tuple[int, ...], data_bytes: int) -> None:
    """Refuse training whose model, data and batch cannot fit together."""
    fp = footprint(cfg, shape)
    if fp is None:
        return
    why = " with its gradients, AdamW moments and EMA copy"
    batch = cfg.train.batch_size
    _check([_model_part(cfg, fp, TRAIN_COPIES, why),
            Part("data", "the data", data_bytes),
            Part("train.batch_size", f"a batch of {batch} examples", batch * fp.per_example)],
           "training")  # fmt: skip


def check_loading(cfg: RunConfig, shape: tuple[int, ...]) -> None:
    """Refuse loading a run whose model (and the weights read into it) cannot fit."""
    fp = footprint(cfg, shape)
    if fp is not None:
        _check([_model_part(cfg, fp, 2, " and its weights file")], "loading")


def check_sampling(cfg: RunConfig, shape: tuple[int, ...], n: int) -> None:
    """Refuse drawing `n` samples at once that cannot fit next to the model."""
    fp = footprint(cfg, shape)
    if fp is None:
        return
    copies, largest = SAMPLE_COPIES
    per = copies * math.prod(shape) * FLOAT + largest * fp.largest
    _check([_model_part(cfg, fp, 1, ""), Part("n", f"drawing {n:.3g} samples at once", n * per)],
           "sampling")  # fmt: skip
