"""`ODEOptions`: how one ODE solve with a log-density is made, as one value.

The joint solve of a state and its log-density (Chen et al. 2018, "Neural ordinary
differential equations", eq. 4; Grathwohl et al. 2019, FFJORD, eq. 4) needs the divergence of
the field (`trace`: "exact", by one vector-Jacobian product per dimension, batched; or
"hutchinson", tr(J) = E[e^T J e] with `probes` draws of `probe` noise, Hutchinson 1989;
FFJORD, eq. 7; or "auto": exact up to `exact_dims` dimensions, where its d products per
evaluation are affordable, Hutchinson above, an unbiased estimate whose spread over
draws `genlab.eval.likelihood` reports as a standard error) and a
torchdiffeq solver (`method`, with tolerances `rtol`/`atol` for an adaptive method or the time
step `step_size` for a fixed-grid one). The CNF's training and likelihood, the probability-flow
ODE likelihood of a diffusion model and the run configs all take these settings as this one
validated, immutable value.

This module imports neither torch nor torchdiffeq (configs and the command line import it).
Subclasses may change the defaults (e.g. a config section with looser training tolerances);
the validators are inherited.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ADAPTIVE_METHODS", "FIXED_GRID_METHODS", "PROBES", "TRACES", "ODEOptions"]

Trace = Literal["exact", "hutchinson", "auto"]
Probe = Literal["rademacher", "gaussian"]
TRACES: tuple[str, ...] = get_args(Trace)
PROBES: tuple[str, ...] = get_args(Probe)

# torchdiffeq's solvers: adaptive step-size control, or a fixed grid of `step_size`
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams",
                      "implicit_adams")  # fmt: skip


class ODEOptions(BaseModel):
    """Divergence estimator and solver of a log-density ODE solve (module docstring).

    `trace`/`probes`/`probe`: exact trace or Hutchinson with `probes` probe vectors of
    Rademacher or Gaussian noise; "auto" is exact up to `exact_dims` dimensions and
    Hutchinson above. `method`: one of `ADAPTIVE_METHODS` (controlled by
    `rtol`, `atol`) or `FIXED_GRID_METHODS` (steps of `step_size` in the ODE's time, which
    must then be set).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace: Trace = "exact"
    probes: int = Field(1, ge=1)
    probe: Probe = "rademacher"
    exact_dims: int = Field(32, ge=1)  # trace = "auto": the exact trace up to this many dims
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    method: str = "dopri5"
    step_size: float | None = Field(None, gt=0, le=1)  # fixed-grid methods: the time step

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        allowed = sorted(ADAPTIVE_METHODS + FIXED_GRID_METHODS)
        if v not in allowed:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _step_size_with_fixed_grid(self) -> ODEOptions:
        fixed = self.method in FIXED_GRID_METHODS
        if fixed and self.step_size is None:
            raise ValueError(f"method {self.method!r} is fixed-grid: set step_size")
        if not fixed and self.step_size is not None:
            raise ValueError(f"step_size is only for fixed-grid methods, not {self.method!r}")
        return self

    def trace_for(self, dim: int) -> str:
        """The divergence estimator of a state of `dim` dimensions: "exact" or "hutchinson"
        ("auto" resolved by `exact_dims`)."""
        if self.trace != "auto":
            return self.trace
        return "exact" if dim <= self.exact_dims else "hutchinson"

    def solver_options(self) -> dict[str, float] | None:
        """torchdiffeq's `options` of this solve: {"step_size": s} on a fixed grid, else None."""
        return None if self.step_size is None else {"step_size": self.step_size}
