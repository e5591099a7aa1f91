"""Dequantized: the change of variables from a continuous model to discrete data, checked
against exact answers (uniform densities, a Gaussian's bin probabilities, the flows path)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from genlab.discrete import Dequantized, grid_to_levels, levels_to_grid, unwrap
from genlab.flows import Logit, NormalizingFlow, dequantized_bpd, realnvp_vector


class Uniform(nn.Module):
    """Density uniform on [-1, 1)^D (affine representation) or the logit image of the
    uniform density on [0, 1)^D (logit representation)."""

    loss_is_nll = True

    def __init__(self, logit: float | None) -> None:
        super().__init__()
        self.logit = logit

    def log_prob(
        self, y: Tensor, cond: Tensor | None = None, *, generator: object = None
    ) -> Tensor:
        if self.logit is None:
            return torch.full((y.shape[0],), -y[0].numel() * math.log(2.0), dtype=y.dtype)
        a = self.logit  # s = (sigmoid(y) - a)/(1 - 2a), ds/dy = sigmoid'(y)/(1 - 2a)
        sig = torch.sigmoid(y)
        return (torch.log(sig) + torch.log1p(-sig) - math.log1p(-2 * a)).flatten(1).sum(1)

    def loss(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(y)


class Gaussian1D(nn.Module):
    loss_is_nll = True

    def __init__(self, mu: float, std: float) -> None:
        super().__init__()
        self.mu, self.std = mu, std

    def log_prob(
        self, y: Tensor, cond: Tensor | None = None, *, generator: object = None
    ) -> Tensor:
        z = (y[:, 0] - self.mu) / self.std
        return -0.5 * z * z - math.log(self.std) - 0.5 * math.log(2 * math.pi)

    def loss(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(y)


def _grid(n: int, d: int, levels: int, seed: int = 0) -> Tensor:
    v = torch.randint(0, levels, (n, d), generator=torch.Generator().manual_seed(seed))
    return levels_to_grid(v.double(), levels)


@pytest.mark.parametrize("logit", [None, 0.05])
def test_uniform_density_gives_log2_levels_bits(logit) -> None:
    levels, d = 17, 5
    model = Dequantized(Uniform(logit), levels, logit=logit)
    x = _grid(64, d, levels)
    lp = model.log_prob(x, generator=torch.Generator().manual_seed(1))
    bpd = -lp / (d * math.log(2.0))
    assert torch.allclose(bpd, torch.full_like(bpd, math.log2(levels)), atol=1e-9)


def test_bound_below_the_exact_bin_probability_of_a_gaussian() -> None:
    """E_u[ln p] - ln L <= ln P(v) = ln of the Gaussian's mass on the bin (Jensen), and the
    mean of exp(ln p + ln|det| - ln L) over u estimates P(v) itself."""
    levels, mu, std = 5, 0.1, 0.4
    model = Dequantized(Gaussian1D(mu, std), levels)
    normal = torch.distributions.Normal(torch.tensor(mu, dtype=torch.float64), std)
    for v in range(levels):
        x = levels_to_grid(torch.full((20_000, 1), float(v), dtype=torch.float64), levels)
        lp = model.log_prob(x, generator=torch.Generator().manual_seed(v))  # (N,)
        lo, hi = 2 * v / levels - 1, 2 * (v + 1) / levels - 1  # the bin in y = 2s - 1
        exact = torch.log(normal.cdf(torch.tensor(hi)) - normal.cdf(torch.tensor(lo)))
        assert lp.mean() <= exact + 1e-9
        estimate = torch.logsumexp(lp, 0) - math.log(lp.shape[0])
        assert abs(float(estimate - exact)) < 0.02


def test_matches_the_flow_models_own_dequantisation_path() -> None:
    """A flow wrapped in Dequantized(logit) gives the bpd of NormalizingFlow(levels, Logit)
    on the same draws (the anchor protocol's evaluator)."""
    torch.manual_seed(0)
    levels, d = 17, 6
    flow = realnvp_vector(d, n_couplings=4, hidden=16)
    reference = NormalizingFlow(flow, (d,), levels=levels, preprocess=Logit(0.05)).double()
    wrapped = Dequantized(NormalizingFlow(flow, (d,)), levels, logit=0.05).double()
    x = _grid(32, d, levels)
    v = grid_to_levels(x, levels)
    ref = dequantized_bpd(reference, v, [7])
    lp = wrapped.log_prob(x, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(-lp / (d * math.log(2.0)), ref, atol=1e-10)


def test_loss_is_the_discrete_nll_of_the_training_draw() -> None:
    levels, d = 17, 4
    model = Dequantized(Gaussian1D(0.0, 1.0), levels, logit=0.05)
    x = _grid(16, d, levels)[:, :1]
    torch.manual_seed(3)
    loss = model.loss(x)
    lp = model.log_prob(x, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)  # the loss drew u from the global generator seeded alike
    assert torch.allclose(loss, -model.log_prob(x), atol=1e-12)
    assert loss.shape == lp.shape == (16,)


def test_samples_land_on_the_grid_and_round_trip() -> None:
    levels = 17
    x = _grid(100, 3, levels)
    for logit in (None, 0.05):
        model = Dequantized(Uniform(logit), levels, logit=logit)
        y, _ = model.represent(x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(model.unrepresent(y), x)
    assert torch.equal(levels_to_grid(grid_to_levels(x, levels), levels), x)


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="levels"):
        Dequantized(Uniform(None), 1)
    with pytest.raises(ValueError, match="logit"):
        Dequantized(Uniform(None), 17, logit=0.5)


class _Recorder(nn.Module):
    """A standard normal density of y that records the keywords of its last calls."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, object] = {}

    def log_prob(self, y: Tensor, cond: Tensor | None = None, *, generator=None, k=1) -> Tensor:
        self.seen = {"generator": generator, "k": k}
        return -0.5 * (y * y).flatten(1).sum(1)

    def sample(self, n: int, cond: Tensor | None = None, *, generator=None, temp=1.0) -> Tensor:
        self.seen = {"generator": generator, "temp": temp}
        return torch.zeros(n, 2, dtype=torch.float64)


def test_keywords_go_straight_to_the_inner_model() -> None:
    """`log_prob` and `sample` forward their keyword options and the generator unchanged; an
    option the inner model does not take is the inner model's TypeError."""
    inner = _Recorder()
    model = Dequantized(inner, 17)
    g = torch.Generator().manual_seed(0)
    model.log_prob(_grid(3, 2, 17), generator=g, k=5)
    assert inner.seen == {"generator": g, "k": 5}
    model.sample(3, generator=g, temp=0.5)
    assert inner.seen == {"generator": g, "temp": 0.5}
    with pytest.raises(TypeError, match="unexpected keyword"):
        model.log_prob(_grid(3, 2, 17), kk=5)


def test_unwrap_is_the_inner_model() -> None:
    inner = Uniform(None)
    assert unwrap(Dequantized(inner, 17)) is inner
    assert unwrap(inner) is inner
