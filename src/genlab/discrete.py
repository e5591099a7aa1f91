"""A continuous model of discrete data: uniform dequantisation as a model wrapper.

Image data in genlab are grid values x = 2 v / (L - 1) - 1 in [-1, 1] of integer levels
v in {0..L-1} (L = 17 for the digits, 256 for 8-bit images). ``Dequantized`` lets any
continuous family (diffusion, flow matching, normalizing and continuous flows) model them
with a likelihood of the discrete data (Theis et al., *A note on the evaluation of
generative models*, ICLR 2016, sec. 3.1):

    s = (v + u) / L,  u ~ U[0,1)^D         (uniform dequantisation, s in [0,1)^D)
    y = g(s)                               (the representation the inner model sees)
    ln P(v) >= E_u[ln p_Y(y) + ln|det dg/ds|] - D ln L,

with g the affine map y = 2s - 1 onto [-1, 1) (ln|det| = D ln 2) or the logit transform
y = logit(a + (1 - 2a) s) of Real NVP (Dinh et al. 2017, sec. 4.1). ``log_prob`` is one
draw of the bracket, a stochastic lower bound of ln P(v) in nats; averaging draws tightens
the estimate of the expectation (not the bound). bits/dim = -ln P(v) / (D ln 2)
(`genlab.density`).

``loss`` trains the inner model on fresh draws of y. For families whose loss is a negative
log-likelihood (``loss_is_nll``: flows, CNFs, VAEs) it is shifted to nats of the discrete
data, -ln p_Y(y) - ln|det| + D ln L, which changes no gradient; a denoising loss is passed
through unchanged (`genlab.represent.Represented`, the base of genlab's model wrappers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.data.dequantize import logit_forward, logit_inverse
from genlab.density import LN2, level_shift
from genlab.represent import Represented, unwrap

__all__ = ["Dequantized", "grid_to_levels", "levels_to_grid", "unwrap"]


def grid_to_levels(x: Tensor, levels: int) -> Tensor:
    """Integer levels v (as floats) of grid values x = 2 v / (levels - 1) - 1."""
    return torch.round((x + 1.0) * (levels - 1) / 2.0).clamp(0, levels - 1)


def levels_to_grid(v: Tensor, levels: int) -> Tensor:
    """Grid values in [-1, 1] of integer levels v in {0..levels-1}."""
    return 2.0 * v / (levels - 1) - 1.0


class Dequantized(Represented):
    """``model`` of y = g((v + u)/L) for discrete data on the [-1, 1] grid (module docstring).

    ``logit``: the logit constant a (y = logit(a + (1 - 2a) s)); None for y = 2 s - 1.
    """

    def __init__(self, model: nn.Module, levels: int, *, logit: float | None = None) -> None:
        super().__init__(model)
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        if logit is not None and not 0.0 <= logit < 0.5:
            raise ValueError(f"logit constant must lie in [0, 0.5), got {logit}")
        self.levels, self.logit = int(levels), logit
        self.discrete = True  # log_prob bounds ln P of the discrete levels

    def represent(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(y, ln|det dy/ds| - D ln L) of one dequantisation draw of grid data x; (B, ...),
        (B,) float64: ln p_Y(y) plus the second term is one draw of the bound of ln P(v)."""
        v = grid_to_levels(x, self.levels)
        u = torch.rand(v.shape, generator=generator, dtype=v.dtype, device="cpu").to(v.device)
        s = (v + u) / self.levels
        dim = math.prod(x.shape[1:])
        if self.logit is not None:
            y, logdet = logit_forward(s, self.logit)
        else:
            y, logdet = 2.0 * s - 1.0, x.new_full((x.shape[0],), dim * LN2)
        return y, logdet.double() - level_shift(dim, self.levels)

    def unrepresent(self, y: Tensor) -> Tensor:
        """Grid values of the levels that the continuous y falls in (the inverse of the
        dequantisation up to u)."""
        s = logit_inverse(y, self.logit) if self.logit is not None else (y + 1.0) / 2.0
        v = torch.floor(s * self.levels).clamp(0, self.levels - 1)
        return levels_to_grid(v, self.levels)
