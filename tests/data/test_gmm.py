"""The analytic Gaussian mixture: densities integrate to one, score = autograd gradient,
denoiser = Tweedie, samples have the right moments, the anchors' bed is reproduced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.data.gmm import GaussianMixture


def _gmm_1d() -> GaussianMixture:
    means = torch.tensor([[-2.0], [0.5], [3.0]], dtype=torch.float64)
    return GaussianMixture(means, torch.tensor([0.4, 1.0, 0.7]), torch.tensor([0.2, 0.5, 0.3]))


def _gmm_2d_diag() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.0], [1.5, 1.0], [0.0, -2.0]], dtype=torch.float64)
    stds = torch.tensor([[0.3, 0.6], [0.5, 0.2], [0.4, 0.4]], dtype=torch.float64)
    return GaussianMixture(means, stds, torch.tensor([1.0, 2.0, 1.0]))


@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_log_prob_integrates_to_one_1d(sigma: float) -> None:
    g = _gmm_1d()
    xs = torch.linspace(-15, 15, 30001, dtype=torch.float64)[:, None]
    dens = g.log_prob(xs, sigma).exp()
    assert float(torch.trapezoid(dens, xs[:, 0])) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_log_prob_integrates_to_one_2d(sigma: float) -> None:
    for g in (_gmm_2d_diag(), GaussianMixture.ring(k=5, radius=2.0, std=0.4)):
        u = torch.linspace(-7, 7, 561, dtype=torch.float64)
        gx, gy = torch.meshgrid(u, u, indexing="ij")
        pts = torch.stack([gx.flatten(), gy.flatten()], dim=1)
        dens = g.log_prob(pts, sigma).exp().reshape(len(u), len(u))
        total = torch.trapezoid(torch.trapezoid(dens, u, dim=1), u)
        assert float(total) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("batch_sigma", [False, True])
def test_score_is_autograd_gradient_and_denoiser_is_tweedie(batch_sigma: bool) -> None:
    g = _gmm_2d_diag()
    gen = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(64, 2, dtype=torch.float64, generator=gen)
    sigma = torch.rand(64, dtype=torch.float64, generator=gen) + 0.05 if batch_sigma else 0.8
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(g.log_prob(xr, sigma).sum(), xr)
    torch.testing.assert_close(g.score(x, sigma), grad, rtol=1e-10, atol=1e-12)
    s2 = (sigma**2)[:, None] if batch_sigma else sigma**2
    torch.testing.assert_close(g.denoiser(x, sigma), x + s2 * g.score(x, sigma), rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(g(x, sigma), g.denoiser(x, sigma))


def test_denoiser_keeps_dtype_and_matches_float64() -> None:
    g = GaussianMixture.ring()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    out = g(x, torch.full((16,), 0.3))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, g(x.double(), 0.3).float())


def test_sample_moments() -> None:
    g = _gmm_2d_diag()
    x, labels = g.sample(200_000, generator=torch.Generator().manual_seed(2), return_labels=True)
    assert x.shape == (200_000, 2) and x.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), g.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), g.covariance(), atol=0.03, rtol=0)
    freq = torch.bincount(labels, minlength=3).double() / len(labels)
    torch.testing.assert_close(freq, g.weights, atol=0.005, rtol=0)


def test_random_reproduces_anchor_bed() -> None:
    g = GaussianMixture.random()
    rng = np.random.default_rng(20240607)
    means = 0.5 * rng.normal(0, 2, (16, 64))
    weights = rng.dirichlet(np.ones(16))
    np.testing.assert_array_equal(g.means.numpy(), means)
    np.testing.assert_allclose(g.weights.numpy(), weights, rtol=1e-14)
    assert bool((g.stds == 0.5).all()) and g.dim == 64 and g.num_components == 16


def test_ring_geometry() -> None:
    g = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    torch.testing.assert_close(g.means.norm(dim=1), torch.full((8,), 4.0, dtype=torch.float64))
    assert float(g.means[0, 1]) == 0.0 and math.isclose(float(g.weights.sum()), 1.0)


def test_class_conditional_restricts_to_component() -> None:
    g = _gmm_2d_diag()
    x = torch.randn(10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cond = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    sigma = 0.9
    var = g.stds[cond] ** 2 + sigma**2
    expected = g.means[cond] + g.stds[cond] ** 2 / var * (x - g.means[cond])
    torch.testing.assert_close(g(x, sigma, cond), expected)
    log_n = -0.5 * ((x - g.means[cond]) ** 2 / var + torch.log(2 * math.pi * var)).sum(1)
    torch.testing.assert_close(g.log_prob(x, sigma, cond), log_n)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(3), 1.0)
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(3, 2), torch.tensor([1.0, -1.0, 1.0]))


def test_isotropic_fast_path_matches_general_path() -> None:
    g = GaussianMixture.random(k=5, dim=7, seed=1)
    slow = GaussianMixture.random(k=5, dim=7, seed=1)
    slow._isotropic = False
    x = 3 * torch.randn(20, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for sigma in (0.0, 0.3, torch.linspace(0.01, 50, 20, dtype=torch.float64)):
        torch.testing.assert_close(g.log_prob(x, sigma), slow.log_prob(x, sigma))
        torch.testing.assert_close(g.score(x, sigma), slow.score(x, sigma))
        torch.testing.assert_close(g(x, sigma), slow(x, sigma))
