"""Preprocessing bijections for image data in [0, 1)^D.

``Logit`` is the logit transform of Dinh et al., *Real NVP*, 2017, sec. 4.1,
y = logit(a + (1 - 2a) x), with ln|det| = sum_i [ln(1 - 2a) - ln s_i - ln(1 - s_i)],
s = a + (1 - 2a) x (formulas in :mod:`genlab.data.dequantize`). Put first in a flow, it
makes ``log_prob`` the density of the dequantised data x in [0, 1)^D.
"""

from __future__ import annotations

from torch import Tensor

from genlab.data.dequantize import LOGIT_ALPHA, logit_forward, logit_inverse
from genlab.flows.base import FlowLayer

__all__ = ["Logit"]


class Logit(FlowLayer):
    """x in [0,1)^D -> y = logit(alpha + (1 - 2 alpha) x), parameter-free."""

    def __init__(self, alpha: float = LOGIT_ALPHA) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return logit_forward(x, self.alpha)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return logit_inverse(z, self.alpha)
