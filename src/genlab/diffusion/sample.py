"""Sampling with a budget of network evaluations (NFE), and the sampler name table.

Budgets are stated in denoiser calls, never in steps, so that samplers of different orders
compare at equal cost: :func:`sample` picks the largest grid whose sampler makes at most
``nfe`` calls and wraps the denoiser in a counter that raises :class:`NFEBudgetExceeded`
rather than exceed the budget (adaptive solvers such as ``rk45`` cannot overrun it silently).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.diffusion import conditions, multistep, samplers, stochastic
from genlab.diffusion.grid_search import FITTED
from genlab.diffusion.schedules import check_grid, grid_fn, make_grid
from genlab.errors import GenlabError


@dataclass(frozen=True)
class SamplerInfo:
    """A sampler with its cost: an n-step grid costs (n - 1) * per_step + last calls.

    ``inner`` is the sampler's inner-loop knob (``n_corrector`` or ``n_steps_each``),
    whose value enters the per-step cost as ``per_step(inner)``.
    """

    fn: Callable[..., Tensor]
    stochastic: bool
    per_step: Callable[[int], int]
    last: Callable[[int], int]
    inner: str | None = None
    adaptive: bool = False

    def calls(self, n: int, inner: int = 1) -> int:
        """Denoiser calls of this sampler on an n-step grid (for ``rk45``: a lower bound)."""
        return (n - 1) * self.per_step(inner) + self.last(inner)

    def steps_for(self, nfe: int, inner: int = 1) -> int:
        """The largest number of grid steps whose cost is at most ``nfe`` (0 if none)."""
        n = 0
        while self.calls(n + 1, inner) <= nfe and n < 100_000:
            n += 1
        return n


def _one(_: int) -> int:
    return 1


def _two(_: int) -> int:
    return 2


SAMPLERS: dict[str, SamplerInfo] = {
    "euler": SamplerInfo(samplers.euler, False, _one, _one),
    "heun": SamplerInfo(samplers.heun, False, _two, _one),
    "ddim": SamplerInfo(samplers.ddim, False, _one, _one),  # stochastic when eta > 0
    "dpmpp_2m": SamplerInfo(multistep.dpmpp_2m, False, _one, _one),
    "dpmpp_3m": SamplerInfo(multistep.dpmpp_3m, False, _one, _one),
    "unipc": SamplerInfo(multistep.unipc, False, _one, _one),
    "rk45": SamplerInfo(samplers.rk45, False, _one, _one, adaptive=True),
    "ddpm": SamplerInfo(stochastic.ddpm, True, _one, _one),
    "euler_ancestral": SamplerInfo(stochastic.euler_ancestral, True, _one, _one),
    "edm_stochastic": SamplerInfo(stochastic.edm_stochastic, True, _two, _one),
    "sde_euler_maruyama": SamplerInfo(stochastic.sde_euler_maruyama, True, _one, _one),
    "predictor_corrector": SamplerInfo(
        stochastic.predictor_corrector, True, lambda m: 1 + m, _one, inner="n_corrector"
    ),
    "langevin": SamplerInfo(
        stochastic.langevin, True, lambda t: t, lambda t: t + 1, inner="n_steps_each"
    ),
}


class NFEBudgetExceeded(GenlabError):
    """A sampler asked for more denoiser calls than the budget allows."""


class CountingDenoiser:
    """Wraps a denoiser, counts its calls and raises before the call that would exceed ``nfe``."""

    def __init__(self, denoiser: Callable[..., Tensor], nfe: int, sampler: str = "") -> None:
        self.denoiser, self.nfe, self.sampler, self.calls = denoiser, nfe, sampler, 0

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        if self.calls >= self.nfe:
            raise NFEBudgetExceeded(
                f"sampler {self.sampler!r} needs more than nfe={self.nfe} denoiser calls "
                "(adaptive solvers choose their own steps: raise nfe or loosen rtol/atol)"
            )
        self.calls += 1
        return self.denoiser(x, sigma, cond)


def check_options(fn: Callable[..., Tensor], options: dict[str, Any]) -> dict[str, Any]:
    """Validate sampler knobs against the sampler's keyword-only parameters."""
    params = inspect.signature(fn).parameters
    allowed = {k for k, p in params.items() if p.kind is p.KEYWORD_ONLY} - {
        "cond",
        "generator",
        "callback",
    }
    bad = sorted(set(options) - allowed)
    if bad:
        raise ValueError(
            f"{fn.__name__} has no option {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}"
        )
    return options


def noise_range(
    denoiser: Callable[..., Tensor], sigma_min: float | None, sigma_max: float | None
) -> tuple[float, float]:
    """(sigma_min, sigma_max): the given values, else the denoiser's attributes of those names."""
    s_min = sigma_min if sigma_min is not None else getattr(denoiser, "sigma_min", None)
    s_max = sigma_max if sigma_max is not None else getattr(denoiser, "sigma_max", None)
    if s_min is None or s_max is None:
        raise ValueError("pass sigma_min and sigma_max (the denoiser has no such attributes)")
    return float(s_min), float(s_max)


def pilot_cond(cond: Any, size: int) -> Any:
    """Conditioning of a pilot batch of ``size`` from that of a sampling batch: its rows
    (labels (B, ...), a text context, a dict of them key by key) repeated in turn; None and
    a scalar are passed unchanged."""
    if cond is None or (isinstance(cond, Tensor) and cond.ndim == 0):
        return cond
    return conditions.rows(cond, torch.arange(size) % conditions.batch_size(cond))


def _fitted(
    denoiser: Callable[..., Tensor], noise: Tensor, sampler: str, nfe: int,
    options: dict[str, Any], sigma_min: float | None, sigma_max: float | None, cond: Any,
) -> Tensor:  # fmt: skip
    """A grid fitted to ``denoiser`` on fresh pilot noise (`genlab.fit_grid` defaults)."""
    from genlab.diffusion.fitted import FIT_DEFAULTS, fit_grid

    return fit_grid(denoiser, sampler=sampler, nfe=nfe, options=options, shape=noise.shape[1:],
                    sigma_min=sigma_min, sigma_max=sigma_max, dtype=noise.dtype,
                    cond=pilot_cond(cond, FIT_DEFAULTS["pilot_size"]))  # fmt: skip


def sample(
    denoiser: Callable[..., Tensor],
    noise: Tensor,
    *,
    sampler: str = "heun",
    nfe: int = 10,
    schedule: str | Tensor = "karras",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    path: object | None = None,
    spacing: str = "linspace",
    options: dict[str, Any] | None = None,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Sample with at most ``nfe`` denoiser calls.

    ``noise`` is standard normal; it is scaled by the grid's first level. The grid has the
    most steps the sampler can afford (heun: (nfe + 1) // 2 steps). ``schedule`` is a grid
    name (``karras``, ``loglinear``, ``uniform_t`` with ``path``/``spacing``), ``"fitted"``
    (a grid fitted to this denoiser on fresh pilot noise, :func:`genlab.fit_grid`; fitted on
    every call: fit once and pass the grid to reuse it) or an explicit grid (its noise range
    is its own; the budget is then only checked). For named grids ``sigma_min``/``sigma_max``
    default to the denoiser's attributes of those names. ``options`` are the sampler's own
    keyword knobs (e.g. ``{"eta": 1.0}`` for ddim, ``{"order": 2}`` for unipc); a wrong name
    is an error. With ``return_trajectory`` the states before every step and the result are
    returned too.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(sorted(SAMPLERS))}")
    if isinstance(schedule, str) and schedule != FITTED:
        grid_fn(schedule)  # the name is checked before the budget
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    info = SAMPLERS[sampler]
    opts = check_options(info.fn, dict(options or {}))
    inner = 1
    if info.inner:
        default = inspect.signature(info.fn).parameters[info.inner].default
        inner = int(opts.get(info.inner, default))
    if isinstance(schedule, Tensor):  # the grid carries its own noise range
        check_grid(schedule)
        sigmas = schedule.to(torch.float64)
    elif schedule == FITTED:
        sigmas = _fitted(denoiser, noise, sampler, nfe, opts, sigma_min, sigma_max, cond)
    else:
        n = 2 if info.adaptive else info.steps_for(nfe, inner)
        if n < 1:
            raise ValueError(
                f"nfe={nfe} is too small for {sampler!r} (one step costs {info.calls(1, inner)})"
            )
        s_min, s_max = noise_range(denoiser, sigma_min, sigma_max)
        sigmas = make_grid(schedule, n, s_min, s_max, rho=rho, path=path, spacing=spacing)
    counted = CountingDenoiser(denoiser, nfe, sampler)
    trajectory: list[Tensor] = []

    def record(info_: dict[str, Any]) -> None:
        if return_trajectory:
            trajectory.append(info_["x"])
        if callback is not None:
            callback(info_)

    cb = record if (return_trajectory or callback is not None) else None
    x = noise * float(sigmas[0])
    x = info.fn(counted, x, sigmas, cond=cond, generator=generator, callback=cb, **opts)
    if return_trajectory:
        return x, trajectory + [x]
    return x
