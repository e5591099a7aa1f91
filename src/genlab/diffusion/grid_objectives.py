"""What a fitted grid minimises: aggregates of the per-trajectory errors on the pilot batch.

With e_j the RMS over coordinates of (sample_j - exact endpoint_j):

- ``rmse``: sqrt(mean_j e_j^2), the benchmark's own measure (what a mean objective sees);
- ``tail``: the RMS error with the worst trajectories up-weighted,
  sqrt(mean_j e_j^2) + (mean_j e_j^4)^(1/4). Where trajectories switch mixture component
  (the posterior over components turns from ambiguous to certain within one step), a few
  trajectories near the boundary carry errors orders of magnitude above the median, and
  one of them landing in the wrong component can dominate the RMSE of thousands. The L4
  term makes the grid resolve the noise levels where that happens (their error decides
  whether a trajectory ends in the right component), at some cost in the median error: it
  pays where such switches are rare but decisive, and needs a pilot large enough to hold
  trajectories near a boundary (`PILOT_SIZES`);
- ``max``: max_j e_j (minimax; on a small pilot the noisiest of the three).

`PILOT_SIZES` and `HOLDOUTS` are the default pilot sizes and held-out fractions of
`genlab.fit_grid` per objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["GRID_OBJECTIVES", "HOLDOUTS", "PILOT_SIZES", "objective_fn", "per_sample_error"]


def per_sample_error(out: Tensor, reference: Tensor) -> Tensor:
    """(B,) float64 RMS over coordinates of out - reference, both (B, ...)."""
    diff = (out.to(torch.float64) - reference.to(torch.float64)).flatten(1)  # (B, D)
    return diff.pow(2).mean(1).sqrt()


def _rmse(e: Tensor) -> Tensor:
    return e.pow(2).mean().sqrt()


def _tail(e: Tensor) -> Tensor:
    return e.pow(2).mean().sqrt() + e.pow(4).mean().pow(0.25)


def _max(e: Tensor) -> Tensor:
    return e.max()


GRID_OBJECTIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "rmse": _rmse,
    "tail": _tail,
    "max": _max,
}

# default pilot trajectories per objective: the tail ones need the rare trajectories near a
# component boundary to be in the pilot at all
PILOT_SIZES: dict[str, int] = {"rmse": 256, "tail": 1024, "max": 1024}
# default held-out fraction of the pilot per objective: the mean objective is validated on
# a held-out quarter; the tail ones see every pilot trajectory (the rare ones are the point)
HOLDOUTS: dict[str, float] = {"rmse": 0.25, "tail": 0.0, "max": 0.0}


def objective_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The objective called `name` (ValueError naming the allowed ones)."""
    if name not in GRID_OBJECTIVES:
        allowed = ", ".join(sorted(GRID_OBJECTIVES))
        raise ValueError(f"unknown grid objective {name!r}; allowed: {allowed}")
    return GRID_OBJECTIVES[name]
