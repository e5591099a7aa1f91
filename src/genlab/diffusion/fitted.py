"""`fit_grid`: a grid of noise levels fitted to a denoiser, for a sampler by name and an NFE.

    grid = genlab.fit_grid(denoiser, sampler="unipc", nfe=10, shape=(2,))
    x = genlab.sample(denoiser, noise, sampler="unipc", nfe=10, schedule=grid)

The pilot batch is fresh noise from a stream derived from ``seed`` and a pilot tag
(:func:`genlab.diffusion.grid_search.pilot_noise`), never the noise a sampler is then
evaluated on; its exact endpoints come from a tight adaptive RK45 solve
(:func:`~genlab.diffusion.grid_search.pilot_reference`), and the grid minimises the
sampler's error to them (:func:`~genlab.diffusion.grid_search.optimize_grid`, objectives
in :mod:`genlab.diffusion.grid_objectives`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from genlab.diffusion.grid_objectives import HOLDOUTS, PILOT_SIZES, objective_fn
from genlab.diffusion.grid_search import GridFit, optimize_grid, pilot_noise, pilot_reference
from genlab.diffusion.sample import SAMPLERS, CountingDenoiser, check_options, noise_range

__all__ = ["FIT_DEFAULTS", "GridStore", "fit_grid", "fit_grid_result", "fit_settings"]

# the defaults of fit_grid's search (and of a run's `--schedule fitted`)
FIT_DEFAULTS: dict[str, Any] = {"objective": "rmse", "pilot_size": PILOT_SIZES["rmse"],
                                "seed": 0, "max_evals": 200, "holdout": 0.25}  # fmt: skip


class GridStore(Protocol):
    """A cache of fitted grids (a run directory's: `genlab.runs.grids.RunGridCache`).

    ``cond``: the condition of the batch being sampled (labels or a text context; the pilot
    batch cycles through its rows); ``uncond``: the unconditional branch of guidance (the
    empty or a negative prompt's context; None: the model's null label)."""

    cond: Any
    uncond: Any

    def grid(self, settings: dict[str, Any], fit: Callable[[], GridFit]) -> Tensor:
        """The grid cached for ``settings``, else ``fit()``'s grid (then cached)."""
        ...


def _steps(sampler: str, nfe: int, options: dict[str, Any]) -> int:
    """Grid steps of a deterministic, fixed-step sampler within ``nfe`` (ValueError else)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(sorted(SAMPLERS))}")
    info = SAMPLERS[sampler]
    if info.stochastic or info.adaptive or options.get("eta", 0.0):
        raise ValueError(
            f"a fitted grid needs a deterministic fixed-step sampler (not {sampler!r})"
        )
    n = info.steps_for(nfe)
    if n < 1:
        raise ValueError(f"nfe={nfe} is too small for {sampler!r} (one step costs {info.calls(1)})")
    return n


def fit_settings(
    sampler: str,
    nfe: int,
    options: dict[str, Any] | None,
    sigma_min: float,
    sigma_max: float,
    *,
    objective: str,
    pilot_size: int,
    seed: int,
    max_evals: int,
    holdout: float,
) -> dict[str, Any]:
    """The settings a grid is fitted for, as a JSON-ready dict (the key of a grid cache)."""
    return {"sampler": sampler, "nfe": int(nfe), "options": dict(sorted((options or {}).items())),
            "sigma_min": float(sigma_min), "sigma_max": float(sigma_max),
            "objective": objective, "pilot_size": int(pilot_size), "seed": int(seed),
            "max_evals": int(max_evals), "holdout": float(holdout)}  # fmt: skip


def fit_grid_result(
    denoiser: Callable[..., Tensor],
    *,
    sampler: str = "unipc",
    nfe: int = 10,
    shape: tuple[int, ...] | None = None,
    options: dict[str, Any] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    objective: str = FIT_DEFAULTS["objective"],
    pilot_size: int | None = None,
    seed: int = FIT_DEFAULTS["seed"],
    dtype: torch.dtype | None = None,
    cond: Any = None,
    max_evals: int = FIT_DEFAULTS["max_evals"],
    holdout: float | None = None,
    pilot: Tensor | None = None,
    reference: Tensor | None = None,
) -> GridFit:
    """:func:`fit_grid` with the pilot losses, the cost and the settings (a `GridFit`)."""
    n = _steps(sampler, nfe, dict(options or {}))
    opts = check_options(SAMPLERS[sampler].fn, dict(options or {}))
    objective_fn(objective)  # the name is checked before any work
    holdout = HOLDOUTS[objective] if holdout is None else holdout
    s_min, s_max = noise_range(denoiser, sigma_min, sigma_max)
    if pilot is None:
        if shape is None:
            raise ValueError("pass shape (of one example) or an explicit pilot noise batch")
        size = PILOT_SIZES[objective] if pilot_size is None else pilot_size
        pilot = pilot_noise(tuple(shape), size, seed, dtype or torch.get_default_dtype())
    start = time.perf_counter()
    counted = CountingDenoiser(denoiser, 2**62)
    x = pilot * s_max  # (P, *shape) at sigma_max
    with torch.no_grad():
        ref = reference if reference is not None else pilot_reference(counted, x, s_max, s_min,
                                                                       cond=cond)  # fmt: skip
        grid, loss, karras_loss = optimize_grid(
            counted, SAMPLERS[sampler].fn, n, s_min, s_max, x, ref, options=opts, cond=cond,
            objective=objective, max_evals=max_evals, holdout=holdout,
        )  # fmt: skip
    settings = fit_settings(sampler, nfe, opts, s_min, s_max, objective=objective,
                            pilot_size=pilot.shape[0], seed=seed, max_evals=max_evals,
                            holdout=holdout)  # fmt: skip
    return GridFit(grid, loss, karras_loss, counted.calls, time.perf_counter() - start, settings)


def fit_grid(denoiser: Callable[..., Tensor], **kwargs: Any) -> Tensor:
    """A grid (float64, (n + 1,), strictly decreasing, ending with 0) for ``sampler`` at
    ``nfe`` denoiser calls, fitted to ``denoiser`` on a pilot batch of fresh noise; pass it
    as ``schedule=`` to :func:`genlab.sample` (which then needs no sigma range).

    Keywords (all optional but ``shape`` or ``pilot``): ``sampler`` (a deterministic name of
    `SAMPLERS`, default "unipc") and its ``options``; ``nfe`` (default 10); ``shape`` of one
    example; ``sigma_min``/``sigma_max`` (default: the denoiser's attributes); ``objective``
    (`GRID_OBJECTIVES`: "rmse", or "tail" where trajectories switch mixture component);
    ``pilot_size`` (default `PILOT_SIZES[objective]`: 256, 1024 for "tail") and ``seed`` of
    the pilot noise (a stream of its own, never the sampling noise of the same seed),
    ``dtype``; ``cond`` of the pilot batch; ``max_evals`` of Powell's search; ``holdout``:
    the fraction of the pilot that only judges the candidates (default `HOLDOUTS[objective]`:
    0.25, 0 for "tail"; see `optimize_grid`); ``pilot``: explicit standard-normal pilot
    noise (P, *shape), and ``reference``: its exact endpoints when already known (e.g. to
    fit several samplers on one pilot).
    On the held-out pilot trajectories (all of them with holdout 0) the fitted grid is never
    worse than Karras' rho = 7 grid at the same NFE.
    """
    return fit_grid_result(denoiser, **kwargs).grid
