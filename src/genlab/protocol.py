"""The one protocol every model family implements, so that training, sampling and evaluation
code works with any of them."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class GenerativeModel(nn.Module, ABC):
    """loss -> per-example values (B,); sample -> n draws. Families whose likelihood is
    defined also implement `log_prob(x, cond=None, *, generator=None, ...) -> Tensor` in nats
    per example: `generator` drives the estimator's randomness (Hutchinson probes, importance
    samples) and is accepted, unused, by exact ones; further keywords are the family's own.

    `loss_is_nll` is True for families whose loss is a negative log-likelihood (or an upper
    bound of one: the negative ELBO), in nats per example."""

    loss_is_nll: bool = False

    @abstractmethod
    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example training loss, shape (B,)."""

    @abstractmethod
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n samples, shape (n, *data_shape)."""
