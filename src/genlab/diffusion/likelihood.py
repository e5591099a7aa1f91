"""Exact likelihood of a denoiser by its probability-flow ODE.

The probability-flow ODE of a denoiser D in the canonical coordinates x = x0 + sigma * eps
of Karras et al. (2022), eq. 4, is dx/dsigma = (x - D(x, sigma)) / sigma; its log-density
follows from the instantaneous change of variables (Chen et al. 2018, "Neural ordinary
differential equations", eq. 4; Song et al. 2021, "Score-based generative modeling through
SDEs", Appendix D.2, eq. 39-40), solved jointly with the state by
`genlab.ode.integrate.integrate_log_prob` with the divergence estimator and solver of an
`ODEOptions` (exact trace by default).

Image data are discrete: `genlab.discrete.Dequantized` wraps a model of uniformly dequantised
pixels so that its `log_prob` bounds the probability of the pixels (bits per dimension).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from genlab.density import standard_normal_log_prob
from genlab.ode.integrate import LikelihoodResult, integrate_log_prob
from genlab.ode.options import ODEOptions


def _eval_dtype(denoiser: Callable[..., Tensor]) -> torch.dtype:
    """The dtype to call the denoiser in: its parameters' dtype, float64 if it has none."""
    if isinstance(denoiser, nn.Module):
        for p in denoiser.parameters():
            return p.dtype
    return torch.float64


def pf_ode_log_prob(
    denoiser: Callable[..., Tensor],
    x: Tensor,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    cond: Any = None,
    ode: ODEOptions | None = None,
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """`log_prob` with the solve's details (prior term, divergence integral, z, NFE)."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    shape, dtype = x.shape, _eval_dtype(denoiser)

    def field(y: Tensor, u: Tensor) -> Tensor:
        # u = log sigma: dx/du = sigma dx/dsigma = x - D(x, sigma); div = d - tr(dD/dx).
        sigma = torch.exp(u).to(dtype).expand(shape[0])  # (B,)
        d = denoiser(y.reshape(shape).to(dtype), sigma, cond)  # (B, ...)
        return y - d.reshape(shape[0], -1).to(y.dtype)  # (B, d)

    x64 = x.detach().reshape(shape[0], -1).to(torch.float64)  # (B, d)
    return integrate_log_prob(
        field, x64, math.log(sigma_min), math.log(sigma_max),
        lambda z: standard_normal_log_prob(z, sigma_max),
        ode=ODEOptions() if ode is None else ode, generator=generator,
    )  # fmt: skip


def log_prob(
    denoiser: Callable[..., Tensor],
    x: Tensor,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    cond: Any = None,
    ode: ODEOptions | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log p(x) in nats per example, shape (B,), by the probability-flow ODE of `denoiser`.

    Song et al. (2021), Appendix D.2, eq. 39-40, in the canonical coordinates of Karras et al.
    (2022), eq. 4: the flow dx/dsigma = (x - D(x, sigma)) / sigma has divergence
    (d - tr dD/dx) / sigma. It is integrated in u = log sigma (where it is d - tr dD/dx, smooth
    over the many decades from sigma_min to sigma_max) from x at sigma_min to z at sigma_max,
    in float64 with torchdiffeq (the denoiser is called in its parameters' dtype), and scored
    under the prior N(0, sigma_max^2 I). Data of any shape is flattened, d = x[0].numel().
    `ode` (default `ODEOptions()`: exact trace, dopri5 at rtol = atol = 1e-5) sets the
    divergence estimator and the solver, in the time u.

    Approximations (both vanish as sigma_min -> 0 and sigma_max -> inf):
    - x is taken as the state at sigma_min, so the result is the model's log p_{sigma_min}(x),
      the data density smoothed by N(0, sigma_min^2 I). For data with local scale s it differs
      from log p_0 by about d sigma_min^2 / (2 s^2) nats (a Gaussian of std s: exactly
      -d/2 log(1 + sigma_min^2/s^2) plus a term of the same order), i.e. negligible for
      sigma_min <= 1e-2 s; on data with exactly-zero-width structure (quantised pixels) it
      is not, which is what dequantisation is for (`genlab.discrete.Dequantized`).
    - the prior N(0, sigma_max^2 I) replaces p_{sigma_max}, an error of about
      E||x0||^2 / (2 sigma_max^2) nats.

    Also the solver error (rtol, atol). `trace="hutchinson"` is unbiased with variance falling
    as 1/probes; the probes are drawn once per call from `generator`. Works inside
    `torch.no_grad()` (gradients are enabled internally); the result carries no graph.
    """
    return pf_ode_log_prob(
        denoiser, x, sigma_min=sigma_min, sigma_max=sigma_max, cond=cond, ode=ode,
        generator=generator,
    ).log_prob  # fmt: skip
