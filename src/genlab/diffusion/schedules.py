"""Discretisation grids of noise levels for the samplers.

A grid is a 1-D float64 tensor ``sigmas`` of shape (n + 1,), strictly decreasing and
ending with 0: ``n`` steps sigma_0 -> sigma_1 -> ... -> sigma_n = 0 (`grid_values` checks
that, for every sampler and every explicit grid). Grids are pure functions of their
arguments, with no hidden state; grids fitted to a denoiser live in
:mod:`genlab.diffusion.grid_search`. `GRIDS` names the grid families for the command line,
configs and `make_grid`.
"""

from __future__ import annotations

import math
from typing import Protocol

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


def grid_values(sigmas: Tensor) -> list[float]:
    """The grid as python floats (float64), after checking that it is a grid: 1-D with at
    least two levels, finite, strictly decreasing and ending with 0 (else ValueError)."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("a grid is a 1-D tensor with at least two noise levels")
    s = sigmas.detach().to("cpu", torch.float64).tolist()
    if not all(math.isfinite(v) for v in s) or s[-1] != 0.0:
        raise ValueError("a grid must be finite and end with 0")
    if any(b >= a for a, b in zip(s[:-1], s[1:], strict=True)):
        raise ValueError("a grid must be strictly decreasing")
    return s


def check_grid(sigmas: Tensor) -> None:
    """Raise ValueError unless ``sigmas`` is 1-D, finite, strictly decreasing and ends with 0."""
    grid_values(sigmas)


class GridFn(Protocol):
    """A grid family by name: n steps between sigma_max and sigma_min, then 0. Each takes
    the keywords of all (`rho` of karras, `path` and `spacing` of uniform_t)."""

    def __call__(
        self, n: int, sigma_min: float, sigma_max: float, *, rho: float, path: object | None,
        spacing: str,
    ) -> Tensor: ...  # fmt: skip


def _karras(
    n: int, sigma_min: float, sigma_max: float, *, rho: float, path: object | None, spacing: str
) -> Tensor:
    """:func:`karras` (Karras et al. 2022, Eq. 5) with exponent ``rho``."""
    return karras(n, sigma_min, sigma_max, rho)


def _loglinear(
    n: int, sigma_min: float, sigma_max: float, *, rho: float, path: object | None, spacing: str
) -> Tensor:
    """:func:`loglinear`: uniform in log sigma (Lu et al. 2022)."""
    return loglinear(n, sigma_min, sigma_max)


def _uniform_t(
    n: int, sigma_min: float, sigma_max: float, *, rho: float, path: object | None, spacing: str
) -> Tensor:
    """:func:`uniform_t`: uniform in the time of ``path`` (required) with ``spacing``."""
    if path is None:
        raise ValueError("schedule 'uniform_t' needs a path (pass path=...)")
    return uniform_t(path, n, spacing=spacing, sigma_min=sigma_min, sigma_max=sigma_max)


# name -> grid family, for the CLI, configs and `make_grid`.
GRIDS: dict[str, GridFn] = {
    "karras": _karras,
    "loglinear": _loglinear,
    "uniform_t": _uniform_t,
}


def grid_fn(name: str) -> GridFn:
    """The grid family called `name` in `GRIDS` (ValueError naming the allowed ones)."""
    if name not in GRIDS:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(sorted(GRIDS))}")
    return GRIDS[name]


def make_grid(
    schedule: str | Tensor,
    n: int,
    sigma_min: float,
    sigma_max: float,
    *,
    rho: float = 7.0,
    path: object | None = None,
    spacing: str = "linspace",
) -> Tensor:
    """An n-step grid by name (see `GRIDS`), or ``schedule`` itself if a tensor (checked)."""
    if isinstance(schedule, Tensor):
        check_grid(schedule)
        return schedule.to(torch.float64)
    return grid_fn(schedule)(n, sigma_min, sigma_max, rho=rho, path=path, spacing=spacing)
