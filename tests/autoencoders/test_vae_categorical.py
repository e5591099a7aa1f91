"""Gumbel-softmax, straight-through and score-function estimators on exactly enumerable cases."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.autoencoders import (
    BernoulliLikelihood,
    CategoricalVAE,
    GaussianLikelihood,
    categorical_kl_uniform,
    gumbel_softmax,
    gumbel_temperature,
    reinforce_surrogate,
)

LOGITS = torch.tensor([1.0, -0.5, 0.3, 2.0, -1.5], dtype=torch.float64)


def test_gumbel_softmax_tends_to_one_hot_as_tau_falls() -> None:
    logits = LOGITS.expand(20_000, 5)
    max_prob = []
    for tau in (5.0, 1.0, 0.3, 0.1, 0.01):
        y = gumbel_softmax(logits, tau, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(y.sum(-1), torch.ones(20_000, dtype=torch.float64))
        max_prob.append(y.max(-1).values.mean().item())
    assert all(a < b for a, b in itertools.pairwise(max_prob)), max_prob
    assert max_prob[-1] > 0.99


def test_gumbel_max_frequencies_match_probabilities() -> None:
    n = 200_000
    y = gumbel_softmax(LOGITS.expand(n, 5), 0.5, generator=torch.Generator().manual_seed(1))
    freq = F.one_hot(y.argmax(-1), 5).double().mean(0)
    p = torch.softmax(LOGITS, -1)
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 4 * se).all(), (freq, p)


def test_straight_through_is_one_hot_with_soft_gradient() -> None:
    logits = LOGITS.expand(100, 5).clone().requires_grad_(True)
    weights = torch.randn(100, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_hard = gumbel_softmax(logits, 0.7, hard=True, generator=torch.Generator().manual_seed(3))
    assert set(y_hard.detach().unique().tolist()) == {0.0, 1.0}
    assert torch.equal(y_hard.detach().sum(-1), torch.ones(100, dtype=torch.float64))
    (grad_hard,) = torch.autograd.grad((y_hard * weights).sum(), logits)
    y_soft = gumbel_softmax(logits, 0.7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y_hard.detach().argmax(-1), y_soft.detach().argmax(-1))
    (grad_soft,) = torch.autograd.grad((y_soft * weights).sum(), logits)
    torch.testing.assert_close(grad_hard, grad_soft)


def test_temperature_schedule() -> None:
    taus = [gumbel_temperature(s, tau0=1.0, rate=1e-3, tau_min=0.5) for s in range(0, 3000, 100)]
    assert taus[0] == 1.0 and taus[-1] == 0.5
    assert all(a >= b for a, b in itertools.pairwise(taus))
    assert gumbel_temperature(100, rate=1e-3) == pytest.approx(math.exp(-0.1))


def test_categorical_kl_matches_torch() -> None:
    logits = torch.randn(4, 3, 6, dtype=torch.float64)  # (B, M, K)
    q = torch.distributions.Categorical(logits=logits)
    p = torch.distributions.Categorical(logits=torch.zeros_like(logits))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(categorical_kl_uniform(logits), expected)


@pytest.mark.parametrize("baseline", ["none", "constant", "leave_one_out"])
def test_reinforce_is_unbiased(baseline: str) -> None:
    """Mean of per-draw score-function gradients of E_q[f(z)] matches enumeration (K = 4)."""
    k, n, s = 4, 40_000, 2
    a = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.3, 0.1, -1.0, 2.0]], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:  # a fixed quadratic of the one-hot z, (..., K) -> (...)
        return (z @ a.T - 0.5).square().sum(-1)

    phi = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    exact_obj = (torch.softmax(phi, -1) * f(torch.eye(k, dtype=torch.float64))).sum()
    (exact,) = torch.autograd.grad(exact_obj, phi)

    rows = phi.detach().expand(n, k).clone().requires_grad_(True)  # one independent estimate/row
    log_q = torch.log_softmax(rows, -1)  # (N, K)
    g = torch.Generator().manual_seed(4)
    idx = torch.multinomial(log_q.detach().exp(), s, replacement=True, generator=g)  # (N, S)
    z = F.one_hot(idx.T, k).double()  # (S, N, K)
    fz, lq = f(z), (z * log_q).sum(-1)  # (S, N)
    if baseline == "none":
        b: torch.Tensor | float = 0.0
    elif baseline == "constant":
        b = 3.0
    else:
        b = (fz.sum(0, keepdim=True) - fz) / (s - 1)
    (per_row,) = torch.autograd.grad(reinforce_surrogate(fz, lq, b).mean(0).sum(), rows)
    se = per_row.std(0) / math.sqrt(n)
    assert ((per_row.mean(0) - exact).abs() < 4 * se).all(), (per_row.mean(0), exact, se)


def _tiny_model(estimator: str, baseline: str, n_samples: int) -> CategoricalVAE:
    torch.manual_seed(5)
    m, k, d = 2, 3, 4
    encoder, decoder = nn.Linear(d, m * k).double(), nn.Linear(m * k, d).double()
    return CategoricalVAE(
        encoder, decoder, BernoulliLikelihood(), (d,), m, k,
        estimator=estimator, baseline=baseline, n_samples=n_samples,  # type: ignore[arg-type]
    )  # fmt: skip


def _all_latents(model: CategoricalVAE) -> torch.Tensor:
    k, m = model.n_classes, model.n_latents
    combos = torch.tensor(list(itertools.product(range(k), repeat=m)))  # (K^M, M)
    return F.one_hot(combos, k).double().flatten(-2)  # (K^M, M * K)


def _exact_elbo(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    stats = model.encode(x)
    z = _all_latents(model)[:, None, :].expand(-1, x.shape[0], -1)  # (K^M, B, M * K)
    q = model.posterior_log_prob(stats, z).exp()
    return (q * model.log_likelihood(z, x)).sum(0) - model.kl(stats)


@pytest.mark.parametrize(
    ("baseline", "n_samples"), [("none", 1), ("moving_average", 1), ("leave_one_out", 2)]
)
def test_categorical_vae_reinforce_gradient_is_unbiased(baseline: str, n_samples: int) -> None:
    model = _tiny_model("reinforce", baseline, n_samples)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    params = list(model.parameters())
    exact = torch.autograd.grad(-_exact_elbo(model, x).sum(), params)
    if baseline == "moving_average":  # a fixed baseline value, not updated in eval mode
        model.baseline_value.fill_(-2.0)
        model.baseline_count.fill_(1)
        model.eval()
    chunks, reps = 20, 300
    x_rep = x.repeat(reps, 1)  # each row an independent single-sample estimate
    per_chunk = [torch.autograd.grad(model.loss(x_rep).sum() / reps, params) for _ in range(chunks)]
    for i, ex in enumerate(exact):
        est = torch.stack([c[i] for c in per_chunk])  # (chunks, *shape)
        se = est.std(0) / math.sqrt(chunks)
        assert ((est.mean(0) - ex).abs() < 4 * se + 1e-8).all(), (est.mean(0), ex, se)


@torch.no_grad()
def test_categorical_iwae_approaches_exact_log_p() -> None:
    model = _tiny_model("gumbel", "none", 1)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    z = _all_latents(model)[:, None, :].expand(-1, 2, -1)
    exact = torch.logsumexp(model.log_likelihood(z, x) + model.prior_log_prob(z), 0)  # (B,)
    g = torch.Generator().manual_seed(6)
    reps = 500
    l1 = model.log_prob(x.repeat(reps, 1), k=1, generator=g).reshape(reps, 2)
    l64 = model.log_prob(x.repeat(reps, 1), k=64, generator=g).reshape(reps, 2)
    elbo = _exact_elbo(model, x)
    assert ((l1.mean(0) - elbo).abs() < 4 * l1.std(0) / math.sqrt(reps)).all()
    assert (elbo < l64.mean(0)).all() and (l64.mean(0) < exact + 1e-3).all()
    assert ((exact - l64.mean(0)) < 0.1 * (exact - elbo)).all()


@pytest.mark.parametrize("estimator", ["gumbel", "straight_through", "reinforce"])
def test_categorical_vae_training_lowers_negative_elbo(estimator: str) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    centres = torch.randn(4, 6, generator=g)
    data = centres[torch.randint(4, (1024,), generator=g)] + 0.1 * torch.randn(1024, 6, generator=g)
    model = CategoricalVAE.with_mlp(
        (6,), 2, 4, GaussianLikelihood("fixed", sigma=0.3), hidden=32, depth=1,
        estimator=estimator, tau=1.0, baseline="moving_average",  # type: ignore[arg-type]
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = -model.elbo(data[:256], n_samples=8).mean().item()
    for step in range(200):
        model.tau = gumbel_temperature(step, tau0=1.0, rate=5e-3, tau_min=0.5)
        opt.zero_grad()
        model.loss(data[256 + (step * 64) % 768 :][:64]).mean().backward()
        opt.step()
    with torch.no_grad():
        after = -model.elbo(data[:256], n_samples=8).mean().item()
    assert after < 0.5 * before, (before, after)


def test_categorical_shapes_and_sampling() -> None:
    model = CategoricalVAE.with_mlp((1, 3, 3), 3, 5, BernoulliLikelihood(), hidden=8, depth=1)
    x = torch.rand(4, 1, 3, 3).round()
    assert model.loss(x).shape == (4,) and model.log_prob(x, k=3).shape == (4,)
    s = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert s.shape == (7, 1, 3, 3)
    with pytest.raises(ValueError):
        CategoricalVAE.with_mlp((4,), 2, 3, BernoulliLikelihood(), estimator="reinforce",
                                baseline="leave_one_out", n_samples=1)  # fmt: skip
