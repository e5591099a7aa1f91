"""PF-ODE likelihood (Song et al. 2021, App. D) against exact densities of Gaussian mixtures."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.likelihood import log_prob, pf_ode_log_prob
from genlab.ode import ODEOptions


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("gmm", "std", "n"),
    [
        (GaussianMixture.ring(k=8, radius=4.0, std=0.3), 0.3, 16),
        (GaussianMixture.random(k=16, dim=16, seed=0), 0.5, 4),
    ],
    ids=["ring-2d", "random-16d"],
)
def test_exact_trace_matches_gmm_log_density(gmm: GaussianMixture, std: float, n: int) -> None:
    x = gmm.sample(n, generator=_gen(1))
    exact = gmm.log_prob(x, sigma=0.0)  # (n,)
    est = log_prob(gmm, x, sigma_min=1e-3 * std, sigma_max=1000.0)
    assert est.shape == (n,) and est.dtype == torch.float64
    assert ((est - exact).abs() / gmm.dim).max() < 0.01


def test_data_of_any_shape_is_flattened() -> None:
    gmm = GaussianMixture.random(k=4, dim=4, seed=3)
    x = gmm.sample(3, generator=_gen(2))

    def denoiser_2x2(y: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return gmm(y.reshape(-1, 4), sigma).reshape(-1, 2, 2)

    kw = {"sigma_min": 1e-3, "sigma_max": 100.0, "ode": ODEOptions(rtol=1e-4, atol=1e-4)}
    flat = log_prob(gmm, x, **kw)
    square = log_prob(denoiser_2x2, x.reshape(3, 2, 2), **kw)
    torch.testing.assert_close(flat, square)


def test_works_under_no_grad() -> None:
    gmm = GaussianMixture.ring(k=4, radius=2.0, std=0.5)
    x = gmm.sample(4, generator=_gen(3))
    kw = {"sigma_min": 1e-3, "sigma_max": 100.0, "ode": ODEOptions(rtol=1e-4, atol=1e-4)}
    ref = log_prob(gmm, x, **kw)
    with torch.no_grad():
        inside = log_prob(gmm, x, **kw)
    torch.testing.assert_close(inside, ref)
    assert not inside.requires_grad


def test_hutchinson_log_prob_is_unbiased() -> None:
    gmm = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    x = gmm.sample(1, generator=_gen(7)).expand(128, 2)  # one point, 128 independent probes
    kw = {"sigma_min": 3e-4, "sigma_max": 1000.0}
    exact = log_prob(gmm, x[:1], ode=ODEOptions(rtol=1e-5, atol=1e-5), **kw)
    ode = ODEOptions(trace="hutchinson", probe="gaussian", rtol=1e-5, atol=1e-5)
    hutch = pf_ode_log_prob(gmm, x, ode=ode, generator=_gen(8), **kw)
    est = hutch.log_prob
    assert est.std() > 1e-3  # the probes do differ
    assert (est.mean() - exact).abs() < 4 * est.std() / math.sqrt(len(est))


def test_default_is_the_exact_trace() -> None:
    """Without `ode` the PF-ODE uses `ODEOptions()`: the exact trace, so no generator is
    needed and the result is deterministic."""
    gmm = GaussianMixture.ring(k=2, radius=1.0, std=0.5)
    x = gmm.sample(2, generator=_gen(9))
    kw = {"sigma_min": 1e-3, "sigma_max": 100.0}
    default = pf_ode_log_prob(gmm, x, **kw)
    torch.testing.assert_close(default.log_prob, log_prob(gmm, x, ode=ODEOptions(), **kw))
    torch.testing.assert_close(default.log_prob, default.prior_log_prob + default.delta_log_prob)
