"""Likelihoods against torch.distributions, and the discretised logistic sums to one."""

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from genlab.autoencoders import (
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
)


def test_bernoulli_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    x = torch.bernoulli(torch.full((7, 5), 0.5, dtype=torch.float64), generator=g)
    expected = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), expected)
    # broadcasting over a leading sample dimension
    lp = BernoulliLikelihood().log_prob(logits.expand(3, 7, 5), x)
    torch.testing.assert_close(lp, expected.expand(3, 7))


@pytest.mark.parametrize("variance", ["fixed", "learned", "predicted"])
def test_gaussian_matches_torch(variance: str) -> None:
    g = torch.Generator().manual_seed(1)
    d = 4
    mu = torch.randn(6, d, generator=g, dtype=torch.float64)
    x = torch.randn(6, d, generator=g, dtype=torch.float64)
    lik = GaussianLikelihood(variance, sigma=0.3, dim=d).double()  # type: ignore[arg-type]
    if variance == "predicted":
        log_sigma = 0.5 * torch.randn(6, d, generator=g, dtype=torch.float64)
        params = torch.cat([mu, log_sigma], dim=-1)
    else:
        log_sigma = torch.full((6, d), 0.3, dtype=torch.float64).log()
        params = mu
    if variance == "learned":
        with torch.no_grad():
            assert lik.log_sigma is not None
            lik.log_sigma.copy_(torch.linspace(-1, 1, d, dtype=torch.float64))
        log_sigma = lik.log_sigma.detach().expand(6, d)
    expected = Normal(mu, log_sigma.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(lik.log_prob(params, x), expected)
    torch.testing.assert_close(lik.mean(params), mu)
    assert lik.sample(params, generator=g).shape == (6, d)


@pytest.mark.parametrize(
    ("levels", "low", "high"), [(256, -1.0, 1.0), (5, -1.0, 1.0), (16, 0.0, 15.0)]
)
def test_discretized_logistic_sums_to_one(levels: int, low: float, high: float) -> None:
    lik = DiscretizedLogisticLikelihood(levels, low=low, high=high)
    g = torch.Generator().manual_seed(2)
    span = high - low
    # (P,) parameter settings incl. far-off means and tiny / huge scales
    mu = torch.cat(
        [
            torch.rand(20, generator=g, dtype=torch.float64) * 2 * span + low - span / 2,
            torch.tensor([low, high, low - 5 * span, high + 5 * span], dtype=torch.float64),
        ]
    )
    log_s = torch.cat(
        [
            torch.randn(20, generator=g, dtype=torch.float64) * 2
            + torch.log(torch.tensor(span / levels)),
            torch.tensor([-7.0, 3.0, -2.0, 0.0], dtype=torch.float64),
        ]
    )
    params = torch.stack([mu, log_s], dim=-1)  # (P, 2): D = 1
    grid = torch.linspace(low, high, levels, dtype=torch.float64)  # all bins
    lp = lik.log_prob_per_dim(params[None], grid[:, None, None])  # (levels, P, 1)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp.exp().sum(0).squeeze(-1), torch.ones(24, dtype=torch.float64))


def test_discretized_logistic_interior_matches_naive() -> None:
    lik = DiscretizedLogisticLikelihood(256)
    x = torch.tensor([-0.5, 0.0, 0.25], dtype=torch.float64)
    mu = torch.tensor([-0.4, 0.1, 0.2], dtype=torch.float64)
    s = torch.tensor([0.1, 0.05, 0.3], dtype=torch.float64)
    h = 1 / 255
    naive = torch.sigmoid((x + h - mu) / s) - torch.sigmoid((x - h - mu) / s)
    lp = lik.log_prob_per_dim(torch.cat([mu, s.log()]), x)
    torch.testing.assert_close(lp, naive.log())


def test_discretized_logistic_tails_have_finite_gradients() -> None:
    lik = DiscretizedLogisticLikelihood(256)
    params = torch.tensor([[5.0, 3.0, -3.0, -7.0, -7.0, -7.0]], requires_grad=True)
    x = torch.tensor([[-1.0, 1.0, 0.5]])  # mu far from x with tiny scales: deep tails
    lp = lik.log_prob(params, x)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(params.grad).all()  # type: ignore[arg-type]


def test_discretized_logistic_samples_on_grid() -> None:
    lik = DiscretizedLogisticLikelihood(5)
    params = torch.tensor([[0.1, -0.3, -1.0, -2.0]]).expand(1000, 4)
    x = lik.sample(params, generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
