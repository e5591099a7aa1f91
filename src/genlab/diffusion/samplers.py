"""Deterministic samplers of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma.

Every sampler is a plain function, so that any of them runs on any denoiser::

    x = sampler(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, ...)

over a denoiser ``D(x, sigma, cond) -> x0_hat`` in the canonical coordinates
x = x0 + sigma * eps of Karras et al. (2022) and a float64 grid ``sigmas`` that is
strictly decreasing and ends with 0. State stays in x's dtype; step coefficients are
python floats computed in float64; history lives in locals. The multistep solvers
(DPM-Solver++ 2M/3M, UniPC) are in :mod:`genlab.diffusion.multistep`, the stochastic
ones in :mod:`genlab.diffusion.stochastic`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from genlab.diffusion.schedules import grid_values


class DenoiserFn(Protocol):
    """``D(x, sigma, cond=None) -> x0_hat`` with sigma of shape (batch,)."""

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor: ...


Callback = Callable[[dict[str, Any]], None]


def sigma_batch(s: float, x: Tensor) -> Tensor:
    """The noise level ``s`` as a (batch,) tensor in x's dtype and device."""
    return torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)


def denoise(
    denoiser: DenoiserFn, x: Tensor, s: float, cond: Any, i: int, callback: Callback | None
) -> Tensor:
    """D(x, s) at step ``i`` of a sampler, reported to ``callback`` as
    {"i": i, "x": x, "sigma": s, "denoised": D} (the state before the step)."""
    d = denoiser(x, sigma_batch(s, x), cond)
    if callback is not None:
        callback({"i": i, "x": x, "sigma": s, "denoised": d})
    return d


def noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of x's shape, dtype and device, drawn from ``generator``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def euler(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler's method on the PF-ODE (Karras et al. 2022, Alg. 1 without the 2nd-order step).

    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D_i) / sigma_i, written as
    D_i + (sigma_{i+1}/sigma_i) (x_i - D_i), which is DDIM with eta = 0 (Song et al. 2021,
    Eq. 13) in these coordinates. One denoiser call per step.
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        x = d + (s[i + 1] / s[i]) * (x - d)
    return x


def heun(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun's 2nd-order method, Karras et al. (2022), Alg. 1 (deterministic sampler).

    The last step, to sigma = 0, is an Euler step, so an n-step grid costs 2n - 1 calls.
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        slope = (x - d) / s[i]  # d_i, Alg. 1 line 4
        x_next = x + (s[i + 1] - s[i]) * slope  # line 5
        if s[i + 1] != 0.0:  # lines 6-8: trapezoidal correction
            d2 = denoiser(x_next, sigma_batch(s[i + 1], x), cond)
            slope2 = (x_next - d2) / s[i + 1]
            x_next = x + (s[i + 1] - s[i]) * (0.5 * slope + 0.5 * slope2)
        x = x_next
    return x


def ddim_coefficients(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """DDIM step sigma -> sigma_next in canonical coordinates: x' = D + k (x - D) + c z.

    With abar = 1 / (1 + sigma^2), DDIM's sigma_t(eta) (Song et al. 2021, Eq. 16) scaled by
    1 / sqrt(abar_{t-1}) gives c = eta (s'/s) sqrt(s^2 - s'^2), and the eps coefficient
    sqrt(s'^2 - c^2) = s k with k = (s'/s) sqrt(1 - eta^2 + eta^2 (s'/s)^2). eta = 0 gives
    k = s'/s (Euler); eta = 1 gives k = (s'/s)^2, c = (s'/s) sqrt(s^2 - s'^2) (DDPM).
    """
    r = s_next / s
    k = r * math.sqrt((1.0 - eta**2) + eta**2 * (r * r))
    c = eta * r * math.sqrt(s * s - s_next * s_next)
    return k, c


def ddim(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM, Song, Meng & Ermon (2021), Eq. 12 with sigma_t(eta) of Eq. 16, in x = x_t/sqrt(abar).

    x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps_hat + sigma_t z
    becomes x' = D + k (x - D) + c z (see :func:`ddim_coefficients`). eta = 0 is
    :func:`euler` exactly; eta = 1 is ancestral :func:`genlab.diffusion.stochastic.ddpm`.
    Noise is drawn only on steps with c > 0. One denoiser call per step.
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        k, c = ddim_coefficients(s[i], s[i + 1], eta)
        x = d + k * (x - d)
        if c > 0.0:
            x = x + c * noise_like(x, generator)
    return x


def rk45(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Adaptive Dormand-Prince RK5(4) (Dormand & Prince 1980) on the PF-ODE via torchdiffeq.

    A reference solver: it integrates from sigmas[0] to the last non-zero level with its own
    adaptive steps (the interior of the grid is ignored), then takes the Euler step to 0,
    x = D(x, sigma_last). The ODE is solved in u = log sigma, dx/du = x - D(x, sigma), which
    is smooth over the decades between the noise levels and keeps every evaluation at a
    positive sigma (a step proposed past the end in sigma could reach sigma <= 0, outside
    the range of a tabulated noise path). The number of denoiser calls depends on rtol/atol.
    """
    from torchdiffeq import odeint

    s = grid_values(sigmas)
    batch = x.shape[0]

    def rhs(u: Tensor, y: Tensor) -> Tensor:
        sig = torch.exp(u).to(y.dtype).expand(batch)
        return y - denoiser(y, sig, cond)

    if len(s) > 2:
        us = torch.tensor([math.log(s[0]), math.log(s[-2])], dtype=x.dtype, device=x.device)
        x = odeint(rhs, x, us, rtol=rtol, atol=atol, method="dopri5")[-1]
    d = denoise(denoiser, x, s[-2], cond, len(s) - 2, callback)
    return d
