"""The log-density formulas every family shares, each written once.

- ``standard_normal_log_prob``: ln N(z; 0, std^2 I) per example, the base density of the
  normalizing flows (Dinh et al. 2017, *Real NVP*, eq. 3), the CNFs and the VAE prior
  (Kingma & Welling 2014), and the prior N(0, sigma_max^2 I) of the probability-flow ODE
  (Song et al. 2021, Appendix D.2).
- ``level_shift``: D ln L, the nats between a density of uniformly dequantised data on
  [0, 1)^D and a probability of the L-level data it dequantises: with x = (v + u) / L,
  u ~ U[0, 1)^D, P(v) = E_u[p_X(x) L^(-D)] >= exp(E_u ln p_X(x) - D ln L) (Jensen), so
  -E_u ln p_X(x) + D ln L bounds -ln P(v) from above (Theis et al. 2016, *A note on the
  evaluation of generative models*, sec. 3.1).
- ``bits_per_dim``: nats / (D ln 2), the per-dimension code length in bits.

Pure arithmetic on tensors or floats: this module does not import torch, so that light
callers (configs, reports) can use the constants.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["LN2", "LOG_2PI", "bits_per_dim", "level_shift", "standard_normal_log_prob"]

LN2 = math.log(2.0)
LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor, std: float = 1.0) -> Tensor:
    """ln N(z; 0, std^2 I) per example, summed over all but the first dim: (B, ...) -> (B,)."""
    z = z.flatten(1)
    d = z.shape[1]
    return -0.5 * (z * z).sum(1) / std**2 - d * math.log(std) - 0.5 * d * LOG_2PI


def level_shift(dim: int, levels: int) -> float:
    """D ln L in nats: -ln P(v) of L-level data is at most -ln p_X(x) + D ln L for x the
    uniform dequantisation (v + u) / L in [0, 1)^D (module docstring)."""
    return dim * math.log(levels)


def bits_per_dim(nats: Tensor | float, dim: int) -> Tensor | float:
    """nats / (D ln 2): a negative log-likelihood in nats as bits per dimension."""
    return nats / (dim * LN2)
