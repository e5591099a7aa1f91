"""The data transform stage: a bijection with its log-determinant (checked against autograd
and against densities known in closed form), grid dequantisation, raw-unit samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor

from genlab.data.columns import ColumnStats
from genlab.density import standard_normal_log_prob
from genlab.protocol import GenerativeModel
from genlab.represent import unwrap
from genlab.transform import ColumnTransform, Transformed


def _transform(
    log: list[bool],
    step: list[float],
    origin: list[float] | None = None,
    shift: list[float] | None = None,
    scale: list[float] | None = None,
) -> ColumnTransform:
    d = len(log)
    return ColumnTransform.from_stats(ColumnStats(
        names=tuple(f"c{j}" for j in range(d)), header=False, scaling="standard",
        shift=np.linspace(-1.0, 2.0, d) if shift is None else np.array(shift),
        scale=np.linspace(0.5, 300.0, d) if scale is None else np.array(scale),
        log=np.array(log), step=np.array(step, dtype=float),
        origin=np.zeros(d) if origin is None else np.array(origin),
    ))  # fmt: skip


class StandardNormal(GenerativeModel):
    """y ~ N(0, I) in d dimensions (an exact inner model; its loss is its NLL)."""

    loss_is_nll = True

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x)

    def log_prob(self, x: Tensor, cond: Tensor | None = None, **_: object) -> Tensor:
        return standard_normal_log_prob(x.double())

    def sample(self, n: int, cond: Tensor | None = None, *, generator=None) -> Tensor:  # type: ignore[no-untyped-def]
        return torch.randn(n, self.d, generator=generator, dtype=torch.float64)


def _rows(n: int = 5) -> Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 50.0, 0.1])
    return x + torch.tensor([0.0, 1000.0, 3.0])  # column 2 strictly positive


def test_round_trip_and_log_det_against_autograd() -> None:
    t = _transform([False, True, True], [0.0, 0.0, 0.0])
    x = _rows()
    y, logdet = t(x)
    torch.testing.assert_close(t.inverse(y), x, rtol=1e-12, atol=1e-9)
    for k in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda r: t(r[None])[0][0], x[k])  # (D, D)
        assert float(logdet[k]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-10)


def test_transformed_log_density_is_the_inner_one_minus_the_inverse_log_det() -> None:
    """ln p_X(x) = ln p_Y(y) - ln|det dT^-1/dy| at y = T(x), the Jacobian by autograd."""
    t = _transform([False, True, False], [0.0, 0.0, 0.0])
    model = Transformed(StandardNormal(3), t)
    x = _rows()
    y, _ = t(x)
    lp = model.log_prob(x)
    for k in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda r: t.inverse(r[None])[0], y[k])
        expect = standard_normal_log_prob(y[k : k + 1]) - torch.linalg.slogdet(jac)[1]
        assert float(lp[k]) == pytest.approx(float(expect), abs=1e-9)


def test_raw_density_is_the_closed_form_normal_and_lognormal() -> None:
    """y ~ N(0, I) pushed through x = shift + scale y (normal) and x = exp(shift + scale y)
    (log-normal) has scipy's densities in raw units."""
    t = _transform([False, True], [0.0, 0.0])
    model = Transformed(StandardNormal(2), t)
    x = torch.tensor([[0.3, 2.0], [-4.0, 150.0], [1.0, 1e-3]], dtype=torch.float64)
    mu, s = t.shift.numpy(), t.scale.numpy()
    expect = stats.norm(mu[0], s[0]).logpdf(x[:, 0].numpy())
    expect += stats.lognorm(s=s[1], scale=math.exp(mu[1])).logpdf(x[:, 1].numpy())
    np.testing.assert_allclose(model.log_prob(x).numpy(), expect, rtol=1e-10)
    # a value <= 0 in a log column has no density (not NaN)
    assert model.log_prob(torch.tensor([[0.0, -1.0]], dtype=torch.float64)).item() == -math.inf


def test_grid_columns_are_dequantised_within_their_cell_and_snapped_back() -> None:
    t = _transform([False, False], [0.5, 0.0], origin=[0.25, 0.0])
    x = torch.tensor([[0.25, 1.234], [3.75, -2.0]], dtype=torch.float64).repeat(500, 1)
    noisy = t.dequantize(x, torch.Generator().manual_seed(1))
    assert ((noisy[:, 0] - x[:, 0]).abs() <= 0.25).all()
    assert (noisy[:, 1] == x[:, 1]).all()  # continuous columns untouched
    assert (noisy[:, 0] - x[:, 0]).std() == pytest.approx(0.5 / math.sqrt(12), rel=0.1)
    torch.testing.assert_close(t.snap(noisy), x)


def test_dequantised_density_bounds_the_cell_probability() -> None:
    """1-D, y ~ N(0, 1), x = shift + scale y on a grid of step h: the cell [v - h/2, v + h/2)
    has probability P = Phi(b) - Phi(a); E_u ln p(x') <= ln(P / h) (Jensen), and the average
    of many draws approaches it from below."""
    t = _transform([False], [0.05], shift=[-0.2], scale=[0.5])
    model = Transformed(StandardNormal(1), t)
    v = torch.tensor([[-1.0], [-0.5], [0.3]], dtype=torch.float64)
    draws = torch.stack([model.log_prob(v, generator=torch.Generator().manual_seed(k))
                         for k in range(4000)])  # fmt: skip
    mu, s = float(t.shift), float(t.scale)
    cdf = stats.norm(mu, s).cdf
    cell = cdf(v.numpy()[:, 0] + 0.025) - cdf(v.numpy()[:, 0] - 0.025)
    bound = np.log(cell / 0.05)
    mean = draws.mean(0).numpy()
    assert (mean <= bound + 4 * draws.std(0).numpy() / math.sqrt(4000)).all()
    np.testing.assert_allclose(mean, bound, atol=0.005)  # h = 0.1 scale: nearly tight


def test_samples_are_raw_units_on_the_grid_and_nll_loss_is_shifted() -> None:
    t = _transform([False, True, False], [0.0, 1.0, 0.01], origin=[0.0, 1.0, 0.0],
                   shift=[5.0, 6.0, 0.0], scale=[0.5, 0.3, 2.0])  # fmt: skip
    model = Transformed(StandardNormal(3), t)
    x = model.sample(4000, generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(x[:, 1], x[:, 1].round())  # integer column
    assert (x[:, 2] * 100 - (x[:, 2] * 100).round()).abs().max() < 1e-6
    assert float(x[:, 0].mean()) == pytest.approx(float(t.shift[0]), abs=4 * 0.5 / 60)
    assert unwrap(model).__class__ is StandardNormal
    # an NLL loss is the NLL of the raw rows: loss = -log_prob at the same draw
    torch.manual_seed(3)
    loss = model.loss(x[:5])
    torch.manual_seed(3)
    y, logdet = model.represent(x[:5])
    torch.testing.assert_close(loss, -(standard_normal_log_prob(y) + logdet))


def test_whitening_is_a_bijection_and_makes_the_standard_normal_the_ml_gaussian() -> None:
    """y = W z with W the inverse Cholesky factor of the training correlation: the training
    rows have identity covariance, the log-det matches autograd, and N(0, I) on y is the
    maximum-likelihood Gaussian of the raw training rows (scipy, biased covariance)."""
    from pathlib import Path

    from scipy.stats import multivariate_normal

    from genlab.data.columns import fit_columns
    from genlab.data.points import Table

    cov = np.array([[9e4, 30.0, -2.0], [30.0, 0.04, 0.01], [-2.0, 0.01, 1.0]])
    x = np.random.default_rng(0).multivariate_normal([1000.0, 0.1, -5.0], cov, 300)
    stats = fit_columns(Table(Path("t.csv"), x), np.arange(200), scaling="whiten", grid=False)
    t = ColumnTransform.from_stats(stats)
    xt = torch.from_numpy(x)
    y, logdet = t(xt)
    np.testing.assert_allclose(np.cov(y[:200].numpy().T, bias=True), np.eye(3), atol=1e-10)
    torch.testing.assert_close(t.inverse(y), xt, rtol=1e-12, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda r: t(r[None])[0][0], xt[0])
    assert float(logdet[0]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-10)
    lp = Transformed(StandardNormal(3), t).log_prob(xt[200:]).numpy()
    tr = x[:200]
    exact = multivariate_normal(tr.mean(0), np.cov(tr.T, bias=True)).logpdf(x[200:])
    np.testing.assert_allclose(lp, exact, rtol=1e-9)
    # sample metrics stay in per-column standardised units, not whitened ones
    z = Transformed(StandardNormal(3), t).standardize(xt[:200])
    np.testing.assert_allclose(z.std(0, correction=0).numpy(), np.ones(3), rtol=1e-9)
