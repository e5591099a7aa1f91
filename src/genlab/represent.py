"""A model of data through a representation of it: the base of genlab's model wrappers.

A wrapper holds any family's model of a representation y = r(x) of the data x and answers
the protocol of `genlab.protocol.GenerativeModel` for x itself. By the change of variables,

    ln p_X(x) = ln p_Y(y) + ln J(x),

where ln J is ln|det dy/dx| for a bijection (Dinh et al. 2017, *Real NVP*, eq. 2), plus, for
a representation drawn at random (uniform dequantisation), the constant that makes the
expectation over the draw a lower bound of the log-probability of the data (Theis et al.
2016, sec. 3.1). A subclass says how to represent (`represent`: y and ln J per example) and
how to map a sample back (`unrepresent`); `loss`, `log_prob` and `sample` follow:

- `loss` trains the inner model on y; a loss that is a negative log-likelihood
  (`loss_is_nll`) is shifted by -ln J into nats of x, which changes no gradient;
- `log_prob` = the inner log-density of y + ln J;
- `sample` maps the inner model's samples back with `unrepresent`.

`genlab.discrete.Dequantized` (pixels) and `genlab.transform.Transformed` (table columns)
are the two wrappers; `unwrap` reaches the family's own model through any of them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from genlab.protocol import GenerativeModel

__all__ = ["Represented", "unwrap"]


class Represented(GenerativeModel):
    """`model` of the representation y = r(x) of the data x (module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss_is_nll = bool(getattr(model, "loss_is_nll", False))

    @abstractmethod
    def represent(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(y, ln J) of a batch x: y (B, ...) in the inner model's dtype, ln J (B,)."""

    @abstractmethod
    def unrepresent(self, y: Tensor) -> Tensor:
        """Data x of the inner model's samples y."""

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The inner loss on a fresh y; a negative log-likelihood is shifted to nats of x."""
        y, log_j = self.represent(x)
        out = self.model.loss(y, cond)
        return out - log_j.to(out.dtype) if self.loss_is_nll else out

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """ln p(x) in nats per example (B,): the inner `log_prob` of y (its keywords
        `options`, e.g. ``ode=ODEOptions(...)``) plus ln J. `generator` draws the
        representation's randomness and is passed on for the inner model's own."""
        y, log_j = self.represent(x, generator=generator)
        lp = self.model.log_prob(y, cond, generator=generator, **options)
        return lp + log_j.to(lp.device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """n samples of x, (n, *data_shape): the inner model's samples mapped back
        (`options` are the inner `sample`'s keywords)."""
        return self.unrepresent(self.model.sample(n, cond, generator=generator, **options))


def unwrap(model: nn.Module) -> nn.Module:
    """The family's own model inside any `Represented` wrappers (`model` itself if none)."""
    while isinstance(model, Represented):
        model = model.model
    return model
