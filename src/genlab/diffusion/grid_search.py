"""Grids fitted to a denoiser: minimise a sampler's error on a small pilot batch.

At a low NFE the placement of the noise levels matters as much as the solver. Given a
denoiser (any model, since only its own trajectories are used), a sampler and a budget, we
compute a high-accuracy solution of the PF-ODE for a pilot batch of fresh noise (adaptive
RK45 with tight tolerances) and choose the grid that minimises the sampler's RMSE to it, in
the spirit of "optimal discretisation" approaches to diffusion sampling (e.g. Sabour et al.
2024, "Align Your Steps"; Xue et al. 2024, "Accelerating diffusion sampling with optimized
time steps"). The grid family is a smooth monotone warp of a Karras grid:

    sigma(tau) = karras_rho(F(tau)),  F(tau) = int_0^tau exp(sum_k c_k cos(k pi u)) du / Z,

with parameters (log rho, c_1..c_m); c = 0 is Karras et al. (2022) Eq. 5. The endpoints
sigma_max, sigma_min and the final 0 are kept. Powell's method (derivative free) searches
the parameters, starting from the best rho of a small scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from genlab.diffusion.samplers import rk45
from genlab.diffusion.schedules import append_zero, check_grid, karras


def warped_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float, coefs: np.ndarray | list[float]
) -> Tensor:
    """The n-step grid sigma_i = karras_rho(F(i / (n - 1))) for the warp F above, then 0."""
    if n < 3:
        return karras(n, sigma_min, sigma_max, rho)
    u = np.linspace(0.0, 1.0, 2049)
    log_density = sum(c * np.cos((k + 1) * math.pi * u) for k, c in enumerate(coefs))
    density = np.exp(np.clip(log_density, -30, 30)) * np.ones_like(u)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    cdf /= cdf[-1]
    tau = np.interp(np.linspace(0.0, 1.0, n), u, cdf)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = torch.tensor((hi + tau * (lo - hi)) ** rho, dtype=torch.float64)
    sig[0], sig[-1] = sigma_max, sigma_min
    grid = append_zero(sig)
    check_grid(grid)  # a warp can collapse neighbouring levels: ValueError
    return grid


def pilot_reference(
    denoiser: Callable[..., Tensor],
    x: Tensor,
    sigma_max: float,
    sigma_min: float,
    *,
    cond: Any = None,
    tol: float = 1e-9,
) -> Tensor:
    """High-accuracy PF-ODE endpoint of the pilot batch: RK45 from sigma_max down to
    sigma_min / 100, then x = D(x) (the remaining error is O((sigma_min / 100)^2))."""
    grid = torch.tensor([sigma_max, sigma_min / 100.0, 0.0], dtype=torch.float64)
    return rk45(denoiser, x, grid, cond=cond, rtol=tol, atol=tol)


def fit_grid(
    denoiser: Callable[..., Tensor],
    sampler: Callable[..., Tensor],
    n: int,
    sigma_min: float,
    sigma_max: float,
    pilot: Tensor,
    *,
    reference: Tensor | None = None,
    options: dict[str, Any] | None = None,
    cond: Any = None,
    n_coefs: int = 4,
    max_evals: int = 400,
    rhos: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0),
) -> Tensor:
    """An n-step grid for ``sampler`` fitted to ``denoiser`` on a pilot batch.

    Args:
        pilot: (B, ...) start points at sigma_max (e.g. sigma_max * fresh standard noise;
            never the noise you evaluate on).
        reference: the exact endpoints of the pilot batch; by default
            :func:`pilot_reference`.
        options: keyword knobs of the sampler.
        n_coefs: number of warp coefficients c_k; max_evals: Powell's evaluation budget.
    Returns the float64 grid (n + 1,) ending with 0, endpoints sigma_max and sigma_min.
    """
    opts = dict(options or {})
    if reference is None:
        reference = pilot_reference(denoiser, pilot, sigma_max, sigma_min, cond=cond)
    ref = reference

    def loss_of(grid: Tensor) -> float:
        with torch.no_grad():
            out = sampler(denoiser, pilot, grid, cond=cond, **opts)
        err = float((out - ref).to(torch.float64).pow(2).mean().sqrt())
        return math.log(err) if math.isfinite(err) and err > 0 else 50.0

    if n < 3:
        return karras(n, sigma_min, sigma_max)
    scan = {rho: loss_of(karras(n, sigma_min, sigma_max, rho)) for rho in rhos}
    rho0 = min(scan, key=scan.__getitem__)

    def objective(theta: np.ndarray) -> float:
        rho = math.exp(min(max(theta[0], math.log(0.5)), math.log(40.0)))
        try:
            grid = warped_karras(n, sigma_min, sigma_max, rho, theta[1:])
        except (ValueError, OverflowError):
            return 50.0
        return loss_of(grid)

    theta0 = np.zeros(1 + n_coefs)
    theta0[0] = math.log(rho0)
    res = minimize(
        objective,
        theta0,
        method="Powell",
        options={"maxfev": max_evals, "xtol": 1e-3, "ftol": 1e-4},
    )
    best = res.x if res.fun < scan[rho0] else theta0
    rho = math.exp(min(max(best[0], math.log(0.5)), math.log(40.0)))
    return warped_karras(n, sigma_min, sigma_max, rho, best[1:])
