"""The canonical denoiser D(x, sigma, cond) made from a network, a path and a parameterization.

Samplers, guidance and likelihood see only this interface (docs/architecture.md): x is the
canonical state x0 + sigma * eps and sigma has shape (batch,). The wrapper maps sigma back
to the path's time, scales the state to x_t = alpha * x, calls the network and converts its
output to x0_hat. Coefficients are computed in float64 and cast at the network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.diffusion.parameterization import Parameterization
from genlab.diffusion.paths import NoisePath


class Denoiser(nn.Module):
    """D(x, sigma, cond) -> x0_hat for a trained network.

    Attributes `sigma_min` and `sigma_max` give the noise-level range the network was
    trained on, so `genlab.sample` needs no sigma arguments for it.
    """

    def __init__(
        self,
        net: nn.Module,
        path: NoisePath,
        parameterization: Parameterization,
        *,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.path = path
        self.parameterization = parameterization
        self.sigma_min = path.sigma_min if sigma_min is None else sigma_min
        self.sigma_max = path.sigma_max if sigma_max is None else sigma_max

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        x_t, c = self.path.from_canonical(x, sigma)  # (B, ...)
        net_x, net_t = self.parameterization.net_inputs(x_t, c, self.path)
        out = self.net(net_x, net_t.to(x.dtype), cond)  # (B, ...)
        return self.parameterization.to_x0(out, x_t, c).to(x.dtype)
