"""Dequantisation, the logit transform and bits per dimension for discrete image data.

Uniform dequantisation (Theis et al., *A note on the evaluation of generative models*,
ICLR 2016, sec. 3.1): integer data v in {0..L-1}^D become x = (v + u)/L with
u ~ U[0,1)^D. For any density p_X on [0,1)^D, -E_u[ln p_X(x)] + D ln L upper-bounds the
discrete NLL of v (Jensen), since p_V(v + u) = p_X(x) L^(-D).

Logit transform (Dinh et al., *Density estimation using Real NVP*, ICLR 2017, sec. 4.1):
y = logit(s) with s = a + (1 - 2a) x, a = 0.05. Its log-determinant is
ln|dy/dx| = sum_i [ln(1 - 2a) - ln s_i - ln(1 - s_i)], so
ln p_X(x) = ln p_Y(y) + sum_i [ln(1 - 2a) - ln s_i - ln(1 - s_i)].

Bits per dimension on the discrete data: bpd = (nll_x + D ln L) / (D ln 2), where
nll_x = -ln p_X(x) in nats (`genlab.density.level_shift` and `genlab.density.bits_per_dim`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab import density

__all__ = [
    "LOGIT_ALPHA",
    "dequantize",
    "logit_forward",
    "logit_inverse",
    "bits_per_dim",
]

LOGIT_ALPHA = 0.05


def dequantize(v: Tensor, levels: int, *, generator: torch.Generator | None = None) -> Tensor:
    """x = (v + u)/levels with u ~ U[0,1) drawn from ``generator``; v holds integers 0..levels-1."""
    u = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    return (v + u) / levels


def logit_forward(x: Tensor, alpha: float = LOGIT_ALPHA) -> tuple[Tensor, Tensor]:
    """y = logit(alpha + (1 - 2 alpha) x) and its log-determinant per example, shape (B,).

    Real NVP (Dinh et al. 2017), sec. 4.1. Works for any shape (B, ...)."""
    s = alpha + (1.0 - 2.0 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    ld = math.log1p(-2.0 * alpha) - torch.log(s) - torch.log1p(-s)  # (B, ...)
    return y, ld.flatten(1).sum(1)


def logit_inverse(y: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """x = (sigmoid(y) - alpha)/(1 - 2 alpha), the exact inverse of :func:`logit_forward`."""
    return (torch.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)


def bits_per_dim(nll_nats_of_x: Tensor | float, D: int, levels: int) -> Tensor | float:
    """bpd on the discrete data: (nll + D ln levels)/(D ln 2), nll = -ln p_X(x) in nats.

    ``nll_nats_of_x`` is the NLL of the dequantised x in [0,1)^D (per example or averaged).
    A density uniform on [0,1)^D (nll 0) gives exactly log2(levels)."""
    return density.bits_per_dim(nll_nats_of_x + density.level_shift(D, levels), D)
