"""The exact trace batched over the Jacobian, the automatic trace choice by dimension, and
the estimator's standard error over draws (checked on fields with closed-form answers)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from genlab.config import LikelihoodSection
from genlab.eval.likelihood import draw_se, estimate
from genlab.eval.progress import DelayedProgress
from genlab.families import LikelihoodBound
from genlab.flows.cnf import ContinuousFlow
from genlab.ode import ODEOptions
from genlab.ode import integrate as ig


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(d: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, d)
    )


@pytest.mark.parametrize("chunk_rows", [1 << 15, 7], ids=["one-pass", "chunked"])
def test_batched_exact_trace_equals_the_per_dimension_one(
    chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tr(d f/d x) of a nonlinear per-example network: the batched (and chunked) exact trace
    equals one backward pass per dimension and the trace of autograd's full Jacobian."""
    monkeypatch.setattr(ig, "EXACT_CHUNK_ROWS", chunk_rows)  # 7 rows: chunks of 1 vector
    d, b = 6, 4
    net = _mlp(d).double()
    x = torch.randn(b, d, generator=_gen(1), dtype=torch.float64).requires_grad_(True)
    out = net(x)  # (B, d)
    batched = ig.divergence(out, x)
    loop = torch.zeros(b, dtype=torch.float64)
    for i in range(d):  # one backward pass per dimension
        loop += torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)[0][:, i]
    jac = torch.stack([torch.autograd.functional.jacobian(net, x[k].detach()) for k in range(b)])
    torch.testing.assert_close(batched, loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batched, torch.diagonal(jac, dim1=1, dim2=2).sum(1))


def test_batched_exact_trace_keeps_the_graph_for_training() -> None:
    """With create_graph the trace is differentiable in the weights: its gradient equals the
    gradient of the per-dimension sum."""
    d = 4
    net = _mlp(d).double()
    x = torch.randn(3, d, generator=_gen(2), dtype=torch.float64).requires_grad_(True)
    out = net(x)
    g1 = torch.autograd.grad(ig.divergence(out, x, create_graph=True).sum(), net[0].weight,
                             retain_graph=True)[0]  # fmt: skip
    per_dim = sum(torch.autograd.grad(out[:, i].sum(), x, create_graph=True)[0][:, i].sum()
                  for i in range(d))  # fmt: skip
    g2 = torch.autograd.grad(per_dim, net[0].weight)[0]
    torch.testing.assert_close(g1, g2)


def test_auto_trace_switches_at_the_dimension_threshold() -> None:
    ode = ODEOptions(trace="auto", exact_dims=3)
    assert [ode.trace_for(d) for d in (1, 3, 4, 100)] == ["exact"] * 2 + ["hutchinson"] * 2
    assert ODEOptions(trace="exact").trace_for(1000) == "exact"
    assert ODEOptions(trace="hutchinson").trace_for(1) == "hutchinson"
    a = 0.3 * torch.randn(4, 4, generator=_gen(3), dtype=torch.float64)
    x = torch.randn(5, 4, generator=_gen(4), dtype=torch.float64)

    def solve(trace: str, exact_dims: int = 32) -> Tensor:
        opts = ODEOptions(trace=trace, exact_dims=exact_dims, rtol=1e-8, atol=1e-8)  # type: ignore[arg-type]
        return ig.integrate_log_prob(lambda y, t: y @ a.T, x, 0.0, 1.0, lambda z: 0 * z[:, 0],
                                     ode=opts, generator=_gen(5)).delta_log_prob  # fmt: skip

    torch.testing.assert_close(solve("auto", 4), solve("exact"))  # d = 4 <= 4: exact
    torch.testing.assert_close(solve("auto", 3), solve("hutchinson"))  # d = 4 > 3: probes
    torch.testing.assert_close(solve("exact"), torch.full((5,), float(torch.trace(a))).double())


class Linear(nn.Module):
    """v(x, t) = A x: the CNF with z = exp(A) x and log p(x) = log N(exp(A) x) + tr A."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return x @ self.a.T


def _linear_cnf(d: int) -> tuple[ContinuousFlow, Tensor, Tensor]:
    from genlab.density import standard_normal_log_prob

    a = 0.4 * torch.randn(d, d, generator=_gen(6), dtype=torch.float64)
    flow = ContinuousFlow(Linear(a), (d,))
    x = torch.randn(24, d, generator=_gen(7), dtype=torch.float64)
    exact = standard_normal_log_prob(x @ torch.linalg.matrix_exp(a).T) + torch.trace(a)
    return flow, x, -exact  # exact NLL per example


def test_hutchinson_estimate_reports_its_standard_error_and_covers_the_exact_answer() -> None:
    """Above exact_dims the estimate is Hutchinson's: unbiased, with a standard error over
    draws that covers the closed-form NLL; at or below it the exact trace, computed once."""
    flow, x, exact_nll = _linear_cnf(5)
    auto = ODEOptions(trace="auto", exact_dims=4, rtol=1e-6, atol=1e-6)
    bound = [LikelihoodBound("CNF ODE", {"ode": auto})]
    (e,) = estimate(flow, x, LikelihoodSection(draws=20), bound)
    assert e.draws == 20 and e.mc_se > 0
    assert abs(e.nats - float(exact_nll.mean())) < 4 * e.mc_se
    exact = ODEOptions(trace="auto", exact_dims=5, rtol=1e-8, atol=1e-8)
    exact_bound = [LikelihoodBound("CNF ODE", {"ode": exact})]
    (x_est,) = estimate(flow, x, LikelihoodSection(draws=20), exact_bound)
    assert x_est.draws == 1 and x_est.mc_se == 0.0  # deterministic: one draw, no spread
    assert x_est.nats == pytest.approx(float(exact_nll.mean()), abs=1e-6)


def test_draw_standard_error_formula() -> None:
    """sqrt(sum_i var_i / D) / N, by hand on a 2 x 3 table."""
    per = torch.tensor([[1.0, 2.0, 4.0], [3.0, 2.0, 0.0]], dtype=torch.float64)
    var = torch.tensor([2.0, 0.0, 8.0])  # unbiased variance over the 2 draws
    assert draw_se(per, 2) == pytest.approx(math.sqrt(float(var.sum()) / 2) / 3)
    assert draw_se(per[:1], 10) == 0.0 and math.isnan(draw_se(per[:1], 1))


def test_progress_bar_appears_only_on_long_evaluations() -> None:
    with DelayedProgress(4, "x", after=3600.0) as fast:
        for _ in range(4):
            fast.advance(1)
    assert fast.bar is None
    with DelayedProgress(4, "x", after=0.0) as slow:
        slow.advance(1)
        assert slow.bar is not None
        slow.advance(3)
    assert slow.bar.tasks[0].completed == 4 and slow.bar.tasks[0].total == 4
