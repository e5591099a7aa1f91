"""Continuous normalizing flows (Grathwohl et al. 2019) and their identity with flow matching."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from genlab.data.gmm import GaussianMixture
from genlab.density import standard_normal_log_prob
from genlab.diffusion.model import Diffusion
from genlab.flows.cnf import ContinuousFlow, flow_matching_log_prob
from genlab.nets.mlp import MLP
from genlab.ode import ODEOptions
from genlab.ode.integrate import integrate_log_prob


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _TinyNet(nn.Module):
    """v(x, t) = W2 tanh(W1 x + w t + b1) + b2 in float64, smooth in t (net time = 1000 t), so
    adaptive solvers stay cheap at tight tolerances."""

    def __init__(self, dim: int = 2, hidden: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, hidden).double()
        self.time = nn.Linear(1, hidden).double()
        self.out = nn.Linear(hidden, dim).double()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.out(torch.tanh(self.inp(x) + self.time(t[:, None] / 1000.0)))


def _tiny_flow(seed: int = 0, **kw: object) -> ContinuousFlow:
    torch.manual_seed(seed)
    return ContinuousFlow(_TinyNet(), (2,), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_exact_trace_equals_hutchinson_in_expectation(probe: str) -> None:
    flow = _tiny_flow()
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64).expand(256, 2)
    exact = flow.log_prob(x[:1], ode=ODEOptions(trace="exact", rtol=1e-6, atol=1e-6))
    hutch = ODEOptions(trace="hutchinson", probe=probe, rtol=1e-6, atol=1e-6)
    est = flow.log_prob(x, ode=hutch, generator=_gen(1))
    assert (est.mean() - exact).abs() < 4 * est.std() / math.sqrt(len(est)) + 1e-6


def test_log_prob_matches_brute_force_change_of_variables() -> None:
    flow = _tiny_flow(1)
    x = torch.tensor([[0.5, 1.0], [-1.2, 0.1]], dtype=torch.float64)
    f = flow.field((1, 2))

    def push(y: torch.Tensor) -> torch.Tensor:  # (2,) -> (2,), x(0) -> x(1)
        ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
        return odeint(lambda t, u: f(u, t), y[None], ts, rtol=1e-9, atol=1e-9)[-1, 0]

    for xi, lp in zip(x, flow.log_prob(x, ode=ODEOptions(rtol=1e-8, atol=1e-8)), strict=True):
        jac = torch.autograd.functional.jacobian(push, xi)  # (2, 2)
        z = push(xi)
        brute = standard_normal_log_prob(z[None])[0] + torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(lp, brute, atol=1e-5, rtol=0)


def test_density_integrates_to_one_on_a_grid() -> None:
    flow = _tiny_flow(2)
    side = torch.linspace(-7.0, 7.0, 71, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)  # (71^2, 2)
    p = flow.log_prob(grid, ode=ODEOptions()).exp().reshape(71, 71)
    mass = torch.trapezoid(torch.trapezoid(p, side, dim=1), side)
    assert abs(float(mass) - 1.0) < 1e-2


def test_sample_inverts_the_flow() -> None:
    flow = _tiny_flow(3)
    tight = ODEOptions(rtol=1e-8, atol=1e-8)
    x = flow.sample(8, generator=_gen(4), ode=tight)
    z = flow.transport(x, 0.0, 1.0, ode=tight)
    z0 = torch.randn(8, 2, generator=_gen(4), dtype=torch.float64)
    torch.testing.assert_close(z, z0, atol=1e-5, rtol=0)


def test_adjoint_gradients_match_backpropagation() -> None:
    """Both converge to the exact gradient of the NLL as the tolerances shrink."""
    x = torch.randn(2, 2, generator=_gen(5), dtype=torch.float64)
    flow = _tiny_flow(4, ode=ODEOptions(rtol=1e-7, atol=1e-7))
    grads = []
    for adjoint in (False, True):
        flow.zero_grad()
        flow.adjoint = adjoint
        flow.loss(x).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in flow.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3 * float(grads[0].abs().max()), rtol=0)


def test_maximum_likelihood_training_lowers_the_nll() -> None:
    data = GaussianMixture.ring(k=4, radius=2.0, std=0.5).sample(256, generator=_gen(6))
    flow = _tiny_flow(5, ode=ODEOptions(rtol=1e-3, atol=1e-3))
    opt = torch.optim.Adam(flow.parameters(), lr=2e-2)
    before = float(flow.log_prob(data, ode=ODEOptions()).mean())
    for i in range(15):
        loss = flow.loss(data[(i * 32) % 256 :][:32]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(flow.log_prob(data, ode=ODEOptions()).mean()) > before + 0.1


def test_fixed_grid_solver_options() -> None:
    """The model's `ode` (a fixed-grid method and its step) goes to torchdiffeq in loss,
    log_prob and sample; a call with its own `ode` uses that one whole. rk4 on a fine grid
    matches dopri5."""
    flow = _tiny_flow(7, ode=ODEOptions(method="rk4", step_size=0.05))
    x = torch.tensor([[0.4, -0.3], [1.1, 0.2]], dtype=torch.float64)
    ref = flow.log_prob(x, ode=ODEOptions(method="dopri5", rtol=1e-8, atol=1e-8))
    torch.testing.assert_close(flow.log_prob(x), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(-flow.loss(x).detach(), ref, atol=1e-6, rtol=0)
    coarse = flow.log_prob(x, ode=ODEOptions(method="rk4", step_size=0.5))
    assert not torch.allclose(coarse, ref, atol=1e-9, rtol=0)
    assert flow.sample(3, generator=_gen(8)).shape == (3, 2)


def test_likelihood_evaluation_integrates_adaptively() -> None:
    """A CNF trained on a coarse fixed grid is scored by `genlab.eval.likelihood` as the
    continuous flow: dopri5 at the settings' tolerances, not the training grid."""
    from genlab import families
    from genlab.config import LikelihoodSection
    from genlab.eval.likelihood import nll

    flow = _tiny_flow(7, ode=ODEOptions(method="rk4", step_size=0.5))
    x = torch.tensor([[0.4, -0.3], [1.1, 0.2]], dtype=torch.float64)
    s = LikelihoodSection(draws=1, seed=0, trace="exact", rtol=1e-8, atol=1e-8)
    (bound,) = families.get("cnf").likelihood(s)  # what `genlab eval --likelihood` uses
    ref = flow.log_prob(x, ode=ODEOptions(method="dopri5", rtol=1e-8, atol=1e-8))
    torch.testing.assert_close(-nll(flow, x, s, bound), ref, atol=1e-7, rtol=0)
    assert not torch.allclose(flow.log_prob(x), ref, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def fm_model() -> Diffusion:
    """A flow-matching model (linear path, velocity output) trained briefly, in float64."""
    torch.manual_seed(0)
    gmm = GaussianMixture.ring(k=4, radius=2.0, std=0.5)
    model = Diffusion.from_preset("flow-matching", _TinyNet(2, 32), (2,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model.loss(gmm.sample(256)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_flow_matching_cnf_is_the_pf_ode_in_other_coordinates(fm_model: Diffusion) -> None:
    """x~ = x_t / (1 - t), sigma = t / (1 - t): the CNF from t0 = s0/(1+s0) to t1 = S/(1+S) with
    base N(0, t1^2 I) is exactly Diffusion.log_prob on [s0, S] with prior N(0, S^2 I), up to the
    Jacobian d log(1 + s0) of x_t = x~ / (1 + s0)."""
    x = GaussianMixture.ring(k=4, radius=2.0, std=0.5).sample(6, generator=_gen(6))
    s0, big_s, tol = 1e-3, 500.0, 1e-6
    t0, t1 = s0 / (1 + s0), big_s / (1 + big_s)
    flow = ContinuousFlow.from_flow_matching(fm_model)
    ode = ODEOptions(rtol=tol, atol=tol)
    cnf = integrate_log_prob(
        flow.field(tuple(x.shape)), x / (1 + s0), t0, t1,
        lambda z: standard_normal_log_prob(z, t1), ode=ode,
    ).log_prob - 2 * math.log(1 + s0)  # fmt: skip
    pf = fm_model.log_prob(x, sigma_min=s0, sigma_max=big_s, ode=ode)
    torch.testing.assert_close(cnf, pf, atol=1e-4, rtol=0)
    # Defaults: CNF on [0, 1] (exact base) vs the PF-ODE with a small sigma_min; they differ by
    # the PF-ODE's prior approximation N(0, sigma_max^2 I) at sigma_max = 500 (t = 0.998).
    full = flow_matching_log_prob(fm_model, x, ode=ode)
    torch.testing.assert_close(full, fm_model.log_prob(x, sigma_min=1e-4, ode=ode), atol=1e-2,
                               rtol=0)  # fmt: skip


def test_from_flow_matching_rejects_other_paths() -> None:
    model = Diffusion.from_preset("edm", MLP(2, hidden=8, depth=1), (2,))
    with pytest.raises(ValueError, match="linear path"):
        ContinuousFlow.from_flow_matching(model)
