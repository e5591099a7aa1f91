"""Continuous normalizing flows (FFJORD; Grathwohl et al. 2019) and their link to flow matching.

Convention (the flow-matching one, so a flow-matching network plugs in unchanged): data at
t = 0, the base N(0, I) at t = 1, and the flow dx/dt = v(x, t) = net(x, time_scale * t, cond).
On the linear path x_t = (1 - t) x0 + t eps the flow-matching target is u = eps - x0
(Lipman et al. 2023, eq. 15 with alpha = 1 - t, sigma = t), so a network trained that way
*is* a CNF velocity field, and its likelihood follows from the instantaneous change of
variables (Chen et al. 2018, eq. 4; Grathwohl et al. 2019, eq. 4):

    log p_0(x) = log N(x(1); 0, I) + int_0^1 div v(x(t), t) dt.

This is the same ODE as the probability-flow ODE of the `Diffusion` model with that network,
written in other coordinates (x~ = x_t / (1 - t), sigma = t / (1 - t); see
`genlab.diffusion.likelihood`). The CNF form needs no sigma_min or sigma_max: it starts at
the data (t = 0) and ends exactly at the base (t = 1, where alpha = 0).

Training is maximum likelihood through the solver: `loss` = -log p(x) per example, by
backpropagation through torchdiffeq or the adjoint method (Chen et al. 2018, Alg. 1), with
the exact trace (small d) or Hutchinson's estimator with fresh probes each call (FFJORD, eq. 7).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.density import standard_normal_log_prob
from genlab.diffusion.paths import LinearPath
from genlab.ode.integrate import Field, LikelihoodResult, integrate_log_prob, solve
from genlab.ode.options import ODEOptions
from genlab.protocol import GenerativeModel


class ContinuousFlow(GenerativeModel):
    """FFJORD-style CNF with velocity network `net(x (B, *data_shape), time (B,), cond)`.

    `ode` is the divergence estimator and solver of `loss` (default
    `ODEOptions(probe="gaussian")`: exact trace, dopri5 at rtol = atol = 1e-5) and the default
    of `log_prob`, `transport` and `sample`, which accept their own `ode` instead (as a whole:
    a fixed-grid training solver does not leak into an evaluation that names dopri5).
    `adjoint` trains by the adjoint method. The state has the network's dtype.
    """

    loss_is_nll = True

    def __init__(
        self,
        net: nn.Module,
        data_shape: tuple[int, ...],
        *,
        time_scale: float = 1000.0,
        ode: ODEOptions | None = None,
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.data_shape = tuple(data_shape)
        self.time_scale = time_scale  # net time = time_scale * t (paths.net_time: 1000 t)
        self.ode = ODEOptions(probe="gaussian") if ode is None else ode
        self.adjoint = adjoint

    @classmethod
    def from_flow_matching(
        cls, model: nn.Module, *, ode: ODEOptions | None = None
    ) -> ContinuousFlow:
        """The CNF of a flow-matching `Diffusion` (linear path, velocity parameterization,
        e.g. the `flow-matching` and `rectified-flow` presets), sharing its network."""
        objective = getattr(model, "objective", None)
        path = getattr(objective, "path", None)
        param = getattr(objective, "parameterization", None)
        if not isinstance(path, LinearPath) or getattr(param, "name", None) != "velocity":
            raise ValueError("needs a Diffusion with the linear path and velocity parameterization")
        scale = float(path.net_time(torch.tensor(1.0, dtype=torch.float64)))
        return cls(model.net, model.data_shape, time_scale=scale, ode=ode)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def velocity(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """v(x, t) (B, *data_shape) for x (B, *data_shape) and t scalar or (B,)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])  # (B,)
        return self.net(x, self.time_scale * t, cond)

    def field(self, shape: tuple[int, ...], cond: Tensor | None = None) -> Field:
        """The flow on flat states: (x (B, d), t) -> v (B, d), for data of `shape` (B, ...)."""

        def f(x: Tensor, t: Tensor) -> Tensor:
            return self.velocity(x.reshape(shape), t, cond).reshape(shape[0], -1)

        return f

    def log_prob_details(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        ode: ODEOptions | None = None,
        generator: torch.Generator | None = None,
        differentiable: bool = False,
    ) -> LikelihoodResult:
        """The joint solve of x (t = 0) to z (t = 1) with its divergence integral, with `ode`
        (default: the model's); Hutchinson probes are drawn from `generator`."""
        x = x.to(self._dtype)
        return integrate_log_prob(
            self.field(tuple(x.shape), cond), x.reshape(x.shape[0], -1), 0.0, 1.0,
            standard_normal_log_prob, ode=self.ode if ode is None else ode, generator=generator,
            differentiable=differentiable, adjoint=differentiable and self.adjoint,
            params=list(self.net.parameters()),
        )  # fmt: skip

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        ode: ODEOptions | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log p(x) in nats per example (B,), no graph (Grathwohl et al. 2019, eq. 4)."""
        return self.log_prob_details(x, cond, ode=ode, generator=generator).log_prob

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Negative log-likelihood per example (B,), differentiable in the network's weights
        (backpropagation through the solver, or the adjoint method if `adjoint`)."""
        return -self.log_prob_details(x, cond, differentiable=True).log_prob

    @torch.no_grad()
    def transport(
        self,
        x: Tensor,
        t_from: float,
        t_to: float,
        cond: Tensor | None = None,
        *,
        ode: ODEOptions | None = None,
    ) -> Tensor:
        """Solve dx/dt = v(x, t) from t_from to t_to (no trace) with the solver of `ode`
        (default: the model's); x (B, *data_shape)."""
        x = x.to(self._dtype)
        f = self.field(tuple(x.shape), cond)
        flat = x.reshape(x.shape[0], -1)  # (B, d)
        out = solve(lambda t, y: f(y, t), flat, t_from, t_to, self.ode if ode is None else ode)
        return out.reshape(x.shape)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        ode: ODEOptions | None = None,
    ) -> Tensor:
        """n draws: z ~ N(0, I) at t = 1 transported to t = 0."""
        device = next(self.net.parameters()).device
        z = torch.randn((n, *self.data_shape), generator=generator, dtype=self._dtype).to(device)
        return self.transport(z, 1.0, 0.0, cond, ode=ode)


def flow_matching_log_prob(
    model: nn.Module,
    x: Tensor,
    cond: Tensor | None = None,
    *,
    ode: ODEOptions | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log p(x) (B,) of a flow-matching `Diffusion` evaluated as a CNF (no sigma_min bias, exact
    base at t = 1); agrees with `model.log_prob(x)` up to that model's sigma_min/sigma_max
    approximations, since both integrate the same ODE. `ode` defaults to `ODEOptions()`."""
    flow = ContinuousFlow.from_flow_matching(model, ode=ODEOptions() if ode is None else ode)
    return flow.log_prob(x, cond, generator=generator)
