"""The one protocol every model family implements (see docs/architecture.md, "Families")."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class GenerativeModel(nn.Module, ABC):
    """loss -> per-example values (B,); sample -> n draws. Families whose likelihood is
    defined also implement `log_prob(x, cond=None, *, generator=None, ...) -> Tensor` in nats
    per example (`generator` draws whatever randomness the estimate needs: dequantisation,
    probes, importance samples; deterministic families ignore it). Family-specific knobs of
    `sample` and `log_prob` are explicit keyword arguments.

    `loss_is_nll` is True for families whose loss is a negative log-likelihood (or an upper
    bound of one: the negative ELBO), in nats per example. `discrete` is True when
    `log_prob` is (a bound of) the log-probability of discrete data (dequantised pixels, a
    discrete decoder) rather than a density: only those have bits/dim of image data."""

    loss_is_nll: bool = False
    discrete: bool = False

    @abstractmethod
    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example training loss, shape (B,)."""

    @abstractmethod
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n samples, shape (n, *data_shape)."""
