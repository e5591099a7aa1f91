"""The joint state and log-density solve (Chen et al. 2018, eq. 4) and its divergence
estimators (exact trace; Hutchinson 1989, unbiased)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.density import standard_normal_log_prob
from genlab.ode import ODEOptions
from genlab.ode.integrate import divergence, draw_probes, integrate_log_prob, solve


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_divergence_exact_and_hutchinson_unbiased(probe: str) -> None:
    a = torch.randn(5, 5, generator=_gen(4), dtype=torch.float64)  # fixed Jacobian
    x = torch.randn(3, 5, generator=_gen(5), dtype=torch.float64).requires_grad_(True)
    out = x @ a.T  # (3, 5), d out / d x = a per example
    exact = divergence(out, x)
    torch.testing.assert_close(exact, torch.full((3,), float(torch.trace(a)), dtype=torch.float64))
    k = 4000
    probes = draw_probes(k, x, probe, _gen(6))  # (k, 3, 5)
    ej = torch.einsum("kbi,ij->kbj", probes, a)  # e^T A
    per_probe = (ej * probes).sum(-1)  # (k, 3) single-probe estimates
    est = divergence(out, x, probes)
    torch.testing.assert_close(est, per_probe.mean(0))
    se = per_probe.std(0) / math.sqrt(k)
    assert ((est - exact).abs() < 4 * se + 1e-12).all()


def test_probes_have_identity_second_moment_and_names_are_checked() -> None:
    like = torch.zeros(2, 3, dtype=torch.float64)
    rad = draw_probes(5, like, "rademacher", _gen(0))
    assert rad.shape == (5, 2, 3) and set(rad.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="unknown probe 'normal'"):
        draw_probes(1, like, "normal")
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        draw_probes(0, like)


@pytest.mark.parametrize(
    "ode",
    [ODEOptions(rtol=1e-9, atol=1e-9), ODEOptions(method="rk4", step_size=0.01)],
    ids=["dopri5", "rk4"],
)
def test_linear_field_has_the_closed_form_log_density(ode: ODEOptions) -> None:
    """dx/dt = A x: x(1) = exp(A) x and int_0^1 div f dt = tr A, so
    log p_0(x) = log N(exp(A) x; 0, I) + tr A exactly (adaptive or fixed-grid solver)."""
    a = 0.5 * torch.randn(3, 3, generator=_gen(1), dtype=torch.float64)
    x = torch.randn(4, 3, generator=_gen(2), dtype=torch.float64)
    res = integrate_log_prob(lambda y, t: y @ a.T, x, 0.0, 1.0, standard_normal_log_prob, ode=ode)
    z = x @ torch.linalg.matrix_exp(a).T
    torch.testing.assert_close(res.z, z, atol=1e-7, rtol=0)
    torch.testing.assert_close(res.delta_log_prob, torch.full((4,), float(torch.trace(a)),
                               dtype=torch.float64), atol=1e-7, rtol=0)  # fmt: skip
    torch.testing.assert_close(res.log_prob, standard_normal_log_prob(z) + torch.trace(a),
                               atol=1e-7, rtol=0)  # fmt: skip
    if ode.step_size is not None:  # the fixed grid: 100 rk4 steps of 4 evaluations each
        assert res.nfe == 400
    back = solve(lambda t, y: y @ a.T, res.z, 1.0, 0.0, ode)  # the state alone, backwards
    torch.testing.assert_close(back, x, atol=1e-7, rtol=0)


def test_flat_states_only() -> None:
    with pytest.raises(ValueError, match="flat"):
        integrate_log_prob(lambda y, t: y, torch.zeros(2, 2, 2), 0.0, 1.0,
                           standard_normal_log_prob, ode=ODEOptions())  # fmt: skip
