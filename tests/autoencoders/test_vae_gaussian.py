"""Gaussian VAE on a linear-Gaussian model, where log p(x) and the posterior are exact.

Decoder x = W z + b + N(0, s^2 I), prior N(0, I), so p(x) = N(b, W W^T + s^2 I). W has
orthogonal columns, so the exact posterior N(A (x - b), S), S = (I + W^T W / s^2)^-1,
A = S W^T / s^2, is diagonal and a Gaussian encoder can represent it exactly.
"""

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from genlab.autoencoders import (
    VAE,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
)

D, L, S = 4, 2, 0.5


def _linear_gaussian(optimal: bool) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # for p_x.sample
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=g, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.8], dtype=torch.float64)  # (D, L), orthogonal columns
    b = torch.randn(D, generator=g, dtype=torch.float64)
    decoder = nn.Linear(L, D).double()
    encoder = nn.Linear(D, 2 * L).double()
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
        cov = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + w.T @ w / S**2)
        a = cov @ w.T / S**2  # (L, D)
        weight = torch.cat([a, torch.zeros(L, D, dtype=torch.float64)])
        bias = torch.cat([-a @ b, torch.diagonal(cov).log()])
        if not optimal:  # an arbitrary, sub-optimal Gaussian encoder: perturb mean and variance
            weight = weight + 0.2 * torch.randn(2 * L, D, generator=g, dtype=torch.float64)
            bias = bias + torch.tensor([0.3, -0.2, 1.0, -0.8], dtype=torch.float64)
        encoder.weight.copy_(weight)
        encoder.bias.copy_(bias)
    model = VAE(encoder, decoder, GaussianLikelihood("fixed", sigma=S), (D,), L)
    p_x = MultivariateNormal(b, w @ w.T + S**2 * torch.eye(D, dtype=torch.float64))
    x = p_x.sample((5,))
    exact = p_x.log_prob(x)
    return model, x, exact


def _analytic_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x | z)] - KL in closed form for the linear decoder:
    log N(x; W mu + b, s^2 I) - tr(W diag(var) W^T) / (2 s^2) - KL."""
    stats = model.encode(x)
    mu, logvar = stats.chunk(2, -1)
    w = model.decoder.weight  # (D, L)
    mean = model.decoder(mu)
    rec = torch.distributions.Normal(mean, S).log_prob(x).sum(-1)
    rec = rec - (w.square() * logvar.exp()[:, None, :]).sum((-2, -1)) / (2 * S**2)
    return rec - model.kl(stats)


@torch.no_grad()
def test_optimal_encoder_elbo_equals_log_p() -> None:
    model, x, exact = _linear_gaussian(optimal=True)
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(_analytic_elbo(model, x), exact)
    # with the exact posterior every importance weight equals p(x): no Monte Carlo error at all
    torch.testing.assert_close(model.log_prob(x, k=7, max_rows=10, generator=g), exact)
    torch.testing.assert_close(model.log_weights(x, 3, generator=g), exact.expand(3, -1))


@pytest.mark.parametrize("optimal", [True, False])
@torch.no_grad()
def test_elbo_estimate_matches_closed_form(optimal: bool) -> None:
    model, x, _ = _linear_gaussian(optimal)
    g = torch.Generator().manual_seed(4)
    reps = 2000
    draws = model.elbo(x.repeat(reps, 1), n_samples=1, generator=g).reshape(reps, -1)
    se = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - _analytic_elbo(model, x)).abs() < 4 * se + 1e-9).all()


@torch.no_grad()
def test_elbo_le_iwae_le_log_p_and_monotone_in_k() -> None:
    model, x, exact = _linear_gaussian(optimal=False)
    g = torch.Generator().manual_seed(2)
    reps = 400
    x_rep = x.repeat(reps, 1)  # (reps * B, D): independent draws of each bound
    elbo = _analytic_elbo(model, x)
    gap = exact - elbo
    assert (gap > 0.3).all(), "the test needs a visibly sub-optimal encoder"
    means, ses = [], []
    for k in (1, 4, 16, 64, 256):
        lk = model.log_prob(x_rep, k=k, generator=g).reshape(reps, -1)  # (reps, B)
        means.append(lk.mean(0))
        ses.append(lk.std(0) / math.sqrt(reps))
    torch.testing.assert_close(means[0], elbo, atol=4 * ses[0].max().item(), rtol=0)  # L_1 = ELBO
    for i in range(len(means) - 1):
        diff = means[i + 1] - means[i]
        se = (ses[i] ** 2 + ses[i + 1] ** 2).sqrt()
        assert (diff > -3 * se).all(), f"IWAE bound decreased from step {i} to {i + 1}"
    assert (means[-1] - means[0] > 0.5 * gap).all()  # most of the gap is closed by k = 256
    assert (means[-1] <= exact + 3 * ses[-1]).all()  # still a lower bound
    assert (exact - means[-1] < 0.25 * gap).all()


def test_kl_matches_torch() -> None:
    model, x, _ = _linear_gaussian(optimal=False)
    stats = model.encode(x)
    mu, logvar = stats.chunk(2, -1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(model.kl(stats), expected)


def test_image_shapes_sampling_and_cond() -> None:
    model = VAE.with_mlp((1, 4, 4), 3, BernoulliLikelihood(), hidden=16, depth=1)
    x = torch.rand(6, 1, 4, 4).round()
    assert model.loss(x).shape == (6,)
    assert model.elbo(x, n_samples=3).shape == (6,)
    assert model.log_prob(x, k=5, max_rows=4).shape == (6,)
    s1 = model.sample(3, generator=torch.Generator().manual_seed(0))
    s2 = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s1.shape == (3, 1, 4, 4) and torch.equal(s1, s2)
    m = model.sample(3, mean=True)
    assert ((m > 0) & (m < 1)).all()
    with pytest.raises(ValueError):
        model.loss(x, cond=torch.zeros(6))
    with pytest.raises(ValueError):
        model.loss(x.reshape(6, 16))


def test_training_lowers_negative_elbo() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 8, generator=g)
    data = torch.tanh(torch.randn(2048, 2, generator=g) @ w) + 0.05 * torch.randn(
        2048, 8, generator=g
    )
    model = VAE.with_mlp(
        (8,), 2, GaussianLikelihood("learned", sigma=1.0, dim=8), hidden=32, depth=1
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    held_out = data[:512]
    with torch.no_grad():
        before = model.loss(held_out).mean().item()
    for step in range(300):
        batch = data[512 + (step * 64) % 1536 :][:64]
        opt.zero_grad()
        model.loss(batch).mean().backward()
        opt.step()
    with torch.no_grad():
        after = model.loss(held_out).mean().item()
    assert after < before - 5.0, (before, after)


@pytest.mark.parametrize(
    "likelihood",
    [
        BernoulliLikelihood(),
        GaussianLikelihood("predicted"),
        GaussianLikelihood("learned", dim=9),
        DiscretizedLogisticLikelihood(16),
    ],
    ids=lambda lik: type(lik).__name__,
)
def test_every_likelihood_trains_and_samples(likelihood: Likelihood) -> None:
    model = VAE.with_mlp((1, 3, 3), 2, likelihood, hidden=8, depth=1)
    x = torch.rand(5, 1, 3, 3).round()  # {0, 1}: on every likelihood's support
    if isinstance(likelihood, DiscretizedLogisticLikelihood):
        x = likelihood.quantize(2 * torch.rand(5, 1, 3, 3) - 1)
    loss = model.loss(x)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    s = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 3, 3)
    if isinstance(likelihood, DiscretizedLogisticLikelihood):
        torch.testing.assert_close(likelihood.quantize(s), s)
