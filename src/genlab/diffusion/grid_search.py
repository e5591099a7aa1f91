"""Grids fitted to a denoiser: minimise a sampler's error on a pilot batch.

At a low NFE the placement of the noise levels matters as much as the solver. Given a
denoiser (any model, since only its own trajectories are used), a sampler and a budget, we
compute a high-accuracy solution of the PF-ODE for a pilot batch of fresh noise (adaptive
RK45 with tight tolerances) and choose the grid that minimises the sampler's error to it, in
the spirit of "optimal discretisation" approaches to diffusion sampling (e.g. Sabour et al.
2024, "Align Your Steps"; Xue et al. 2024, "Accelerating diffusion sampling with optimized
time steps"). The grid family is a smooth monotone warp of a Karras grid:

    sigma(tau) = karras_rho(F(tau)),  F(tau) = int_0^tau exp(sum_k c_k cos(k pi u)) du / Z,

with parameters (log rho, c_1..c_m); c = 0 is Karras et al. (2022) Eq. 5. The endpoints
sigma_max, sigma_min and the final 0 are kept. Powell's method (derivative free) searches
the parameters, starting from the best rho of a small scan.

The error of a grid is an aggregate of the per-trajectory errors e_j (RMS over coordinates
of sample j minus its exact endpoint), named in `GRID_OBJECTIVES` (see
:mod:`genlab.diffusion.grid_objectives`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from genlab.diffusion import conditions
from genlab.diffusion.grid_objectives import GRID_OBJECTIVES, objective_fn, per_sample_error
from genlab.diffusion.samplers import rk45
from genlab.diffusion.schedules import append_zero, check_grid, karras

__all__ = ["FITTED", "GRID_OBJECTIVES", "GridFit", "optimize_grid", "pilot_noise",
           "pilot_reference", "warped_karras"]  # fmt: skip

FITTED = "fitted"  # the schedule name of a grid fitted to the denoiser
PILOT_TAG = 0x9170  # mixed into the pilot seed, so that pilot noise is never sampling noise


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
    tol: float | None = None,
) -> Tensor:
    """High-accuracy PF-ODE endpoint of the pilot batch: RK45 from sigma_max down to
    sigma_min / 100, then x = D(x) (the remaining error is O((sigma_min / 100)^2)).
    ``tol`` defaults to 1e-9 in float64 and 1e-6 in lower precision."""
    if tol is None:
        tol = 1e-9 if x.dtype == torch.float64 else 1e-6
    grid = torch.tensor([sigma_max, sigma_min / 100.0, 0.0], dtype=torch.float64)
    return rk45(denoiser, x, grid, cond=cond, rtol=tol, atol=tol)


def _clamped_rho(log_rho: float) -> float:
    return math.exp(min(max(log_rho, math.log(0.5)), math.log(40.0)))


def optimize_grid(
    denoiser: Callable[..., Tensor],
    sampler: Callable[..., Tensor],
    n: int,
    sigma_min: float,
    sigma_max: float,
    pilot: Tensor,
    reference: Tensor,
    *,
    options: dict[str, Any] | None = None,
    cond: Any = None,
    objective: str = "rmse",
    n_coefs: int = 4,
    max_evals: int = 200,
    holdout: float = 0.25,
    rhos: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0),
) -> tuple[Tensor, float, float]:
    """The n-step warped Karras grid minimising ``objective`` of ``sampler`` on the pilot
    batch (B, ...) started at sigma_max, against its exact endpoints ``reference``.

    The search runs on the first (1 - holdout) of the pilot; the grid returned is the one of
    {Karras rho = 7, the best Karras rho of the scan, the search's optimum} with the lowest
    objective on the held-out rest (hold-out validation: a warp that only fits the search's
    trajectories, e.g. by steering a few of them into the right mixture component, is not
    taken). With ``holdout = 0`` all three are judged on the whole pilot.

    Returns (grid (n + 1,) float64 ending with 0, its objective and that of Karras rho = 7 on
    the held-out trajectories, or on all with holdout 0); the first is never above the second.
    """
    opts, score = dict(options or {}), objective_fn(objective)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must lie in [0, 1), got {holdout}")
    n_fit = pilot.shape[0] - int(round(holdout * pilot.shape[0]))
    fit_part = slice(0, n_fit)
    held = slice(n_fit, None) if n_fit < pilot.shape[0] else fit_part

    def loss_of(grid: Tensor, part: slice) -> float:
        c = conditions.rows(cond, part)
        with torch.no_grad():
            out = sampler(denoiser, pilot[part], grid, cond=c, **opts)
        err = float(score(per_sample_error(out, reference[part])))
        return math.log(err) if math.isfinite(err) and err > 0 else 50.0

    karras7 = karras(n, sigma_min, sigma_max, 7.0)
    candidates = [karras7]
    if n >= 3:
        scan = {rho: loss_of(karras(n, sigma_min, sigma_max, rho), fit_part) for rho in rhos}
        rho0 = min(scan, key=scan.__getitem__)
        candidates += [karras(n, sigma_min, sigma_max, rho0),
                       _search(loss_of, fit_part, n, sigma_min, sigma_max, rho0, n_coefs,
                               max_evals)]  # fmt: skip
    judged = [loss_of(grid, held) for grid in candidates]
    best = min(range(len(candidates)), key=judged.__getitem__)
    return candidates[best], math.exp(judged[best]), math.exp(judged[0])


def _search(
    loss_of: Callable[[Tensor, slice], float], part: slice, n: int, sigma_min: float,
    sigma_max: float, rho0: float, n_coefs: int, max_evals: int,
) -> Tensor:  # fmt: skip
    """Powell's method over (log rho, c_1..c_m) from (log rho0, 0): the best warped grid."""

    def objective_of(theta: np.ndarray) -> float:
        try:
            grid = warped_karras(n, sigma_min, sigma_max, _clamped_rho(theta[0]), theta[1:])
        except (ValueError, OverflowError):
            return 50.0
        return loss_of(grid, part)

    theta0 = np.zeros(1 + n_coefs)
    theta0[0] = math.log(rho0)
    res = minimize(objective_of, theta0, method="Powell",
                   options={"maxfev": max_evals, "xtol": 1e-3, "ftol": 1e-4})  # fmt: skip
    return warped_karras(n, sigma_min, sigma_max, _clamped_rho(res.x[0]), res.x[1:])


@dataclass(frozen=True)
class GridFit:
    """A fitted grid and what it cost: ``loss`` and ``karras_loss`` are the objective on the
    held-out pilot trajectories of the fitted grid and of Karras rho = 7 at the same NFE;
    ``calls`` counts denoiser calls (batched over the pilot), ``seconds`` the wall time."""

    grid: Tensor
    loss: float
    karras_loss: float
    calls: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def pilot_noise(
    shape: tuple[int, ...], size: int, seed: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """(size, *shape) standard normal pilot noise from a stream derived from (seed, a pilot
    tag) with numpy's SeedSequence: never the stream `torch.manual_seed(seed)` samples from."""
    derived = int(np.random.SeedSequence([seed, PILOT_TAG]).generate_state(1, np.uint64)[0])
    gen = torch.Generator().manual_seed(derived & (2**63 - 1))
    return torch.randn((size, *shape), generator=gen, dtype=dtype)
