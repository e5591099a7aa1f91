"""The continuous normalizing flow (FFJORD) as a family: maximum likelihood through an ODE
solver, the velocity network from `[net]`, the solver of training from `[cnf]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from genlab.families.base import Family, Shape, net_for, ode_likelihood
from genlab.ode import ODEOptions

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.protocol import GenerativeModel


class CNFOptions(ODEOptions):
    """FFJORD training (`genlab.flows.cnf.ContinuousFlow`): the divergence by the exact
    trace or Hutchinson's estimator with `probes` draws of `probe` noise, dopri5 (or another
    adaptive `method`) at `rtol`/`atol`, or a fixed-grid `method` (e.g. "rk4") with time step
    `step_size`. Likelihood evaluation always integrates with dopri5 at the `[likelihood]`
    tolerances, so a model trained on a coarse grid is scored as the continuous flow it is.
    Maximum likelihood on a coarse grid can exploit the discretisation error (the grid's
    "density" is not normalised): its training loss then falls far below the true NLL; use
    `likelihood.select = "nll"` to validate on the adaptive estimate."""

    trace: Literal["exact", "hutchinson", "auto"] = "hutchinson"
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-3, gt=0)


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    from genlab.flows.cnf import ContinuousFlow

    opts: CNFOptions = cfg.options  # type: ignore[assignment]
    return ContinuousFlow(net_for(cfg, shape), shape, ode=ODEOptions(**opts.model_dump()))


def describe(cfg: RunConfig) -> str:
    c: CNFOptions = cfg.options  # type: ignore[assignment]
    solver = f"{c.method} rtol {c.rtol:g}" if c.step_size is None else \
        f"{c.method} step {c.step_size:g}"  # fmt: skip
    return f"FFJORD, {cfg.net_label()}, train {c.trace} trace, {solver}"


FAMILY = Family(
    name="cnf",
    description="continuous normalizing flow (FFJORD): maximum likelihood through an ODE "
    "solver, exact trace or Hutchinson",
    options=CNFOptions,
    build=build,
    describe=describe,
    dequantize_images=True,
    uses_net=True,
    likelihood=ode_likelihood("CNF ODE"),
)
