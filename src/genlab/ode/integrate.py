"""Exact likelihood of ODE models by the instantaneous change of variables.

For a flow dx/dt = f(x, t) the log-density along a trajectory obeys
d log p_t(x(t)) / dt = -div f(x(t), t) (Chen et al. 2018, "Neural ordinary differential
equations", Theorem 1, eq. 4), so

    log p_{t0}(x) = log p_{t1}(x(t1)) + int_{t0}^{t1} div f(x(t), t) dt,

and both the state and the running integral are solved jointly as one ODE (Grathwohl et al.
2019, FFJORD, eq. 4; Song et al. 2021, "Score-based generative modeling through SDEs",
Appendix D.2, eq. 39-40). `integrate_log_prob` is that joint solve for any field: the
continuous normalizing flow (`genlab.flows.cnf`) and the probability-flow ODE of a diffusion
model (`genlab.diffusion.likelihood`) both use it.

Divergence. `trace="exact"` takes d vector-Jacobian products (one per dimension, batched into
few backward passes: fine for small d); `trace="hutchinson"` uses tr(J) = E[e^T J e] with
E[e e^T] = I (Hutchinson 1989; Grathwohl et al. 2019, eq. 7) and one fixed set of probes e
per integration, which keeps the ODE deterministic for the adaptive solver and the estimate
of log p unbiased. `trace="auto"` is exact up to `ODEOptions.exact_dims` dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint, odeint_adjoint

from genlab.ode.options import PROBES, ODEOptions

Field = Callable[[Tensor, Tensor], Tensor]  # (x (B, d), t ()) -> dx/dt (B, d)
EXACT_CHUNK_ROWS = 1 << 15  # (unit vector, example) rows of one batched backward pass


@dataclass(frozen=True)
class LikelihoodResult:
    """Outcome of one joint solve; every tensor has a leading batch dimension."""

    log_prob: Tensor  # (B,) log p_{t0}(x) in nats
    prior_log_prob: Tensor  # (B,) log p_{t1}(x(t1))
    delta_log_prob: Tensor  # (B,) int_{t0}^{t1} div f dt
    z: Tensor  # (B, d) the state at t1
    nfe: int  # evaluations of the field (each costs one network call plus its trace passes)


def draw_probes(
    n_probes: int,
    like: Tensor,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
) -> Tensor:
    """(n_probes, *like.shape) probe vectors with E[e e^T] = I: Rademacher (+-1) or N(0, I)."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; allowed: {', '.join(PROBES)}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    shape = (n_probes, *like.shape)
    if probe == "gaussian":
        e = torch.randn(shape, generator=generator, dtype=torch.float64)
    else:
        e = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2.0 - 1.0
    return e.to(like.device, like.dtype)


def divergence(
    out: Tensor, x: Tensor, probes: Tensor | None = None, *, create_graph: bool = False
) -> Tensor:
    """div f = tr(d out / d x) per example, for out = f(x) with x (B, d) requiring grad.

    `probes` None: exact, from the vector-Jacobian products with the d unit vectors, batched
    into one backward pass per chunk of at most `EXACT_CHUNK_ROWS` (unit vector, example)
    rows (`torch.autograd.grad(is_grads_batched=True)`, i.e. vmap over the vectors), so the
    cost is d backward passes' worth of matrix products in a few calls and the memory stays
    bounded at any d; assumes examples do not interact, as in any per-example network.
    `probes` (K, B, d): Hutchinson, mean_k e_k^T (d out/dx) e_k, unbiased when
    E[e e^T] = I (Grathwohl et al. 2019, eq. 7).
    """
    if probes is not None:
        ej = _vjp(out, x, probes, create_graph)  # (K, B, d): e_k^T J
        return (ej * probes).sum(2).mean(0)  # (B,)
    b, d = x.shape
    chunk = max(1, EXACT_CHUNK_ROWS // max(b, 1))
    total = out.new_zeros(b)
    for start in range(0, d, chunk):
        k = min(chunk, d - start)
        rows = torch.arange(k, device=out.device)
        basis = out.new_zeros(k, b, d)
        basis[rows, :, start + rows] = 1.0  # basis[j] = e_{start+j} for every example
        vj = _vjp(out, x, basis, create_graph)  # (k, B, d): vj[j] = e_{start+j}^T J
        total = total + vj[rows, :, start + rows].sum(0)  # diagonal entries, (B,)
    return total


def _vjp(out: Tensor, x: Tensor, vs: Tensor, create_graph: bool) -> Tensor:
    """(K, B, d) products v_k^T (d out / d x), vectorised over k (falls back to a loop for
    functions torch.vmap cannot batch)."""
    try:
        return torch.autograd.grad(
            out, x, vs, create_graph=create_graph, retain_graph=True, is_grads_batched=True
        )[0]
    except RuntimeError:
        rows = [
            torch.autograd.grad(out, x, v, create_graph=create_graph, retain_graph=True)[0]
            for v in vs
        ]
        return torch.stack(rows)


class _Augmented:
    """d/dt (x, a) = (f(x, t), div f(x, t)), counting its evaluations."""

    def __init__(self, field: Field, probes: Tensor | None, differentiable: bool) -> None:
        self.field, self.probes, self.differentiable = field, probes, differentiable
        self.nfe = 0

    def __call__(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        self.nfe += 1
        with torch.enable_grad():
            if not self.differentiable or not x.requires_grad:
                x = x.detach().requires_grad_(True)
            f = self.field(x, t)  # (B, d)
            div = divergence(f, x, self.probes, create_graph=self.differentiable)  # (B,)
        if not self.differentiable:
            f, div = f.detach(), div.detach()
        return f, div.to(f.dtype)


def solve(
    func: Callable[[Tensor, Any], Any],
    y0: Any,
    t0: float,
    t1: float,
    ode: ODEOptions,
    *,
    adjoint: bool = False,
    params: list[Tensor] | None = None,
) -> Any:
    """The state at t1 of dy/dt = func(t, y) from y0 (a tensor or a tuple of tensors) at t0,
    by torchdiffeq with the solver of `ode`, in the dtype and on the device of y0's first
    tensor; `adjoint` solves by the adjoint method (Chen et al. 2018, Alg. 1) with `params`."""
    like = y0[0] if isinstance(y0, tuple) else y0
    ts = torch.tensor([t0, t1], dtype=like.dtype, device=like.device)
    kw = {"rtol": ode.rtol, "atol": ode.atol, "method": ode.method,
          "options": ode.solver_options()}  # fmt: skip
    if adjoint:
        ys = odeint_adjoint(func, y0, ts, adjoint_params=tuple(params or ()), **kw)
    else:
        ys = odeint(func, y0, ts, **kw)
    return tuple(y[-1] for y in ys) if isinstance(y0, tuple) else ys[-1]


def integrate_log_prob(
    field: Field,
    x: Tensor,
    t0: float,
    t1: float,
    prior_log_prob: Callable[[Tensor], Tensor],
    *,
    ode: ODEOptions,
    generator: torch.Generator | None = None,
    differentiable: bool = False,
    adjoint: bool = False,
    params: list[Tensor] | None = None,
) -> LikelihoodResult:
    """log p_{t0}(x) for the flow dx/dt = field(x, t) with the density `prior_log_prob` at t1.

    Solves (x, a) jointly with torchdiffeq from t0 to t1 in x's dtype (Chen et al. 2018, eq. 4):
    a' = div f, log p_{t0}(x) = log p_{t1}(x(t1)) + a(t1). x: (B, d) flat. The divergence and
    the solver are `ode`'s (trace "auto" resolved by the dimension d); Hutchinson probes are
    drawn once from `generator`.
    `differentiable` keeps the graph for maximum-likelihood training (FFJORD);
    `adjoint` then uses the adjoint method (Chen et al. 2018, Alg. 1) with `params`.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be flat (B, d), got shape {tuple(x.shape)}")
    exact = ode.trace_for(x.shape[1]) == "exact"
    probes = None if exact else draw_probes(ode.probes, x, ode.probe, generator)
    func = _Augmented(field, probes, differentiable or adjoint)
    a0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.enable_grad() if differentiable else torch.no_grad():
        z, delta = solve(func, (x, a0), t0, t1, ode, adjoint=adjoint, params=params)
    prior = prior_log_prob(z)  # (B,)
    return LikelihoodResult(prior + delta, prior, delta, z, func.nfe)
