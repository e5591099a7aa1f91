"""Discretisation grids of noise levels for the samplers.

A grid is a 1-D float64 tensor ``sigmas`` of shape (n + 1,), strictly decreasing and
ending with 0: ``n`` steps sigma_0 -> sigma_1 -> ... -> sigma_n = 0. Grids are pure
functions of their arguments (STYLE.md principle 2); grids fitted to a denoiser live in
:mod:`genlab.diffusion.grid_search`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if n < 1:
        raise ValueError(f"a grid needs at least one step, got n={n}")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")


def append_zero(sigmas: Tensor) -> Tensor:
    """Append the final noise level 0 to a decreasing float64 grid."""
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022), Eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) -
    s_max^(1/rho)))^rho for i < n, then 0. ``n = 1`` is the single step sigma_max -> 0."""
    _check_range(n, sigma_min, sigma_max)
    if n == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    sig[0], sig[-1] = sigma_max, sigma_min  # exact endpoints
    return append_zero(sig)


def loglinear(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log sigma, i.e. uniform in half log-SNR lambda = -log sigma (Lu et al. 2022,
    DPM-Solver, Sec. 3.3 "time step schedule"), then 0."""
    _check_range(n, sigma_min, sigma_max)
    if n == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    log_sig = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64)
    sig = torch.exp(log_sig)
    sig[0], sig[-1] = sigma_max, sigma_min
    return append_zero(sig)


def ddim_timesteps(num_train_steps: int, n: int, spacing: str = "linspace") -> Tensor:
    """Integer timesteps (n,) in decreasing order, as in DDIM (Song et al. 2021, Sec. 4.2 and
    App. D.2) and in the common "leading"/"trailing" variants (Lin et al. 2024, Table 2).

    leading: arange(n) * (K // n), reversed; trailing: round(arange(K, 0, -K/n)) - 1;
    linspace: round(linspace(0, K - 1, n)), reversed.
    """
    k = num_train_steps
    if not 1 <= n <= k:
        raise ValueError(f"need 1 <= n <= {k} DDIM steps, got {n}")
    if spacing == "leading":
        ts = torch.arange(n, dtype=torch.float64) * (k // n)
    elif spacing == "trailing":
        ts = torch.round(torch.arange(k, 0, -k / n, dtype=torch.float64)) - 1
        return ts.long()
    elif spacing == "linspace":
        ts = torch.round(torch.linspace(0, k - 1, n, dtype=torch.float64))
    else:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: leading, trailing, linspace")
    return ts.flip(0).long()


def uniform_t(
    path: object,
    n: int,
    *,
    spacing: str = "linspace",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Tensor:
    """Uniform steps in the path's own time t, then 0.

    For a discrete DDPM path (one with ``alphas_cumprod``/``noise_levels``) these are DDIM's
    integer timesteps (:func:`ddim_timesteps`) and sigma_i = noise_levels[t_i] exactly.
    For continuous paths t runs uniformly between t(sigma_max) and t(sigma_min) (defaults:
    the path's ``sigma_max``/``sigma_min``); ``leading`` drops the t(sigma_max) end and
    ``trailing`` the t(sigma_min) end, as for DDPM.
    """
    levels = getattr(path, "noise_levels", None)
    if levels is not None:
        ts = ddim_timesteps(len(levels), n, spacing)
        return append_zero(levels.to(torch.float64)[ts])
    s_lo = float(path.sigma_min if sigma_min is None else sigma_min)  # type: ignore[attr-defined]
    s_hi = float(path.sigma_max if sigma_max is None else sigma_max)  # type: ignore[attr-defined]
    _check_range(n, s_lo, s_hi)
    t_of = path.t_from_noise  # type: ignore[attr-defined]
    t_lo = float(t_of(torch.tensor(s_lo, dtype=torch.float64)))
    t_hi = float(t_of(torch.tensor(s_hi, dtype=torch.float64)))
    if spacing == "linspace":
        ts = torch.linspace(t_hi, t_lo, n, dtype=torch.float64) if n > 1 else torch.tensor([t_hi])
    elif spacing == "leading":
        ts = t_lo + (t_hi - t_lo) * torch.arange(n, 0, -1, dtype=torch.float64) / n
    elif spacing == "trailing":
        ts = t_hi - (t_hi - t_lo) * torch.arange(n, dtype=torch.float64) / n
    else:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: leading, trailing, linspace")
    sig = path.noise_level(ts.to(torch.float64)).to(torch.float64)  # type: ignore[attr-defined]
    return append_zero(sig)


def check_grid(sigmas: Tensor) -> None:
    """Raise ValueError unless ``sigmas`` is 1-D, finite, strictly decreasing and ends with 0."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("a grid is a 1-D tensor with at least two noise levels")
    if not bool(torch.isfinite(sigmas).all()) or float(sigmas[-1]) != 0.0:
        raise ValueError("a grid must be finite and end with 0")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("a grid must be strictly decreasing")


# name -> grid function, for the CLI, configs and `genlab.diffusion.sample.sample`.
# karras/loglinear take (n, sigma_min, sigma_max); uniform_t takes (path, n).
GRIDS: dict[str, Callable[..., Tensor]] = {
    "karras": karras,
    "loglinear": loglinear,
    "uniform_t": uniform_t,
}
