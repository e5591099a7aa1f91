"""Sample-quality metrics checked against closed forms on Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.eval import metrics
from genlab.eval.metrics import (
    energy_distance,
    log_density_gap,
    mmd_rbf,
    sample_metrics,
    sliced_wasserstein,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=_gen(seed), dtype=torch.float64)


def _abs_mean_normal(a: float, b: float) -> float:
    """E|Z| for Z ~ N(a, b^2) (folded normal mean)."""
    phi = 0.5 * (1.0 + math.erf((-a / b) / math.sqrt(2.0)))  # Phi(-a/b)
    return b * math.sqrt(2.0 / math.pi) * math.exp(-a * a / (2 * b * b)) + a * (1 - 2 * phi)


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(values)))


# ---- sliced Wasserstein -------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(4000, 4000), (3000, 2000)])
def test_sw2_gaussian_shift_matches_analytic(sizes: tuple[int, int]) -> None:
    # W2 along theta is |theta . mu|, so SW2^2 = E[(theta . mu)^2] = |mu|^2 / D.
    mu = torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64)
    x = _normal(sizes[0], 3, 0)
    y = _normal(sizes[1], 3, 1) + mu
    sw = sliced_wasserstein(x, y, n_projections=1000, generator=_gen(2))
    expected = float(mu.norm()) / math.sqrt(3)
    # projection noise: relative std of the SW2^2 estimate ~ 0.9 / sqrt(1000) = 3%
    assert sw == pytest.approx(expected, rel=0.05)


def test_sw2_of_sample_with_itself_is_zero() -> None:
    x = _normal(500, 4, 0)
    assert sliced_wasserstein(x, x, generator=_gen(1)) == 0.0
    # the same empirical measure with every point repeated twice: still exactly 0
    assert sliced_wasserstein(x, x.repeat(2, 1), generator=_gen(1)) == pytest.approx(0, abs=1e-12)


def test_sw2_unequal_sizes_is_exact_1d_w2() -> None:
    # In 1-D every direction is +-1, so SW2 is W2. Expanding both empirical measures to
    # lcm(n, m) equally weighted atoms turns W2 into a plain sorted pairing.
    x, y = _normal(6, 1, 0), _normal(4, 1, 1) * 2 + 1
    xs = torch.sort(x.repeat_interleave(2, dim=0), dim=0).values  # 12 atoms
    ys = torch.sort(y.repeat_interleave(3, dim=0), dim=0).values  # 12 atoms
    expected = float(((xs - ys) ** 2).mean().sqrt())
    assert sliced_wasserstein(x, y, n_projections=8, generator=_gen(2)) == pytest.approx(expected)
    assert sliced_wasserstein(y, x, n_projections=8, generator=_gen(2)) == pytest.approx(expected)


def test_sw2_reproducible_and_rejects_bad_input() -> None:
    x, y = _normal(100, 2, 0), _normal(80, 2, 1)
    a = sliced_wasserstein(x, y, n_projections=16, generator=_gen(5))
    assert a == sliced_wasserstein(x, y, n_projections=16, generator=_gen(5))
    with pytest.raises(ValueError, match="differ in dimension"):
        sliced_wasserstein(x, _normal(10, 3, 0))
    with pytest.raises(ValueError, match="at least 2 points"):
        sliced_wasserstein(x[:1], y)


# ---- MMD ----------------------------------------------------------------------------------


def test_mmd_matches_closed_form_for_gaussians() -> None:
    # For N(0, I) vs N(delta, I) in D dims and kernel exp(-|a-b|^2 / (2 h^2)):
    # E k(X, Y) = (h^2 / (h^2 + 2))^(D/2) exp(-|delta|^2 / (2 (h^2 + 2))), E k(X, X') = same at 0.
    d, h = 2, 1.0
    delta = torch.tensor([1.0, 0.0], dtype=torch.float64)
    c = (h * h / (h * h + 2.0)) ** (d / 2)
    expected = 2 * c * (1 - math.exp(-float(delta @ delta) / (2 * (h * h + 2.0))))
    values = [
        mmd_rbf(_normal(400, d, s), _normal(300, d, 100 + s) + delta, bandwidth=h)
        for s in range(12)
    ]
    mean, se = _mean_and_se(values)
    assert abs(mean - expected) < 4 * se + 1e-3


def test_mmd_unbiased_near_zero_for_same_distribution_and_positive_otherwise() -> None:
    same = [mmd_rbf(_normal(300, 2, s), _normal(300, 2, 50 + s)) for s in range(12)]
    mean, se = _mean_and_se(same)
    assert abs(mean) < 4 * se
    assert min(same) < 0 < max(same)  # unbiased: it fluctuates around zero
    diff = [mmd_rbf(_normal(300, 2, s), _normal(300, 2, 50 + s) + 1.0) for s in range(4)]
    assert min(diff) > 20 * se


def test_mmd_symmetric_and_chunking_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _normal(700, 3, 0), _normal(500, 3, 1) * 1.3
    full = mmd_rbf(x, y)
    assert mmd_rbf(y, x) == pytest.approx(full, rel=1e-10)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 1000)  # many small row blocks
    assert mmd_rbf(x, y) == pytest.approx(full, rel=1e-10)


# ---- energy distance ----------------------------------------------------------------------


def test_energy_distance_matches_closed_form_1d() -> None:
    # X ~ N(0, 1), Y ~ N(m, 1): X - Y ~ N(-m, 2) and X - X' ~ N(0, 2).
    m = 1.0
    expected = 2 * _abs_mean_normal(m, math.sqrt(2)) - 2 * _abs_mean_normal(0.0, math.sqrt(2))
    values = [
        energy_distance(_normal(3000, 1, s), _normal(2500, 1, 100 + s) + m, unbiased=True)
        for s in range(8)
    ]
    mean, se = _mean_and_se(values)
    assert abs(mean - expected) < 4 * se + 1e-3
    assert expected == pytest.approx(0.5418, abs=1e-3)  # sanity of the formula itself


def test_energy_distance_zero_for_itself_symmetric_and_chunked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = _normal(600, 2, 0), _normal(400, 2, 1) + 0.5
    assert energy_distance(x, x) == 0.0
    full = energy_distance(x, y)
    assert full > 0
    assert energy_distance(y, x) == pytest.approx(full, rel=1e-10)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 777)
    assert energy_distance(x, y) == pytest.approx(full, rel=1e-10)


def test_energy_biased_minus_unbiased_is_diagonal_correction() -> None:
    x, y = _normal(50, 2, 0), _normal(40, 2, 1)
    n, m = 50, 40
    s_xx = float(torch.cdist(x, x).sum())
    s_yy = float(torch.cdist(y, y).sum())
    gap = s_xx / (n * (n - 1)) - s_xx / n**2 + s_yy / (m * (m - 1)) - s_yy / m**2
    assert energy_distance(x, y) - energy_distance(x, y, unbiased=True) == pytest.approx(gap)


# ---- log-density gap and the bundle -------------------------------------------------------


def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def test_log_density_gap_matches_gaussian_expectation() -> None:
    # q = N(mu, s^2 I), p = N(0, I): E_q log p - E_p log p = -(D (s^2 - 1) + |mu|^2) / 2.
    d, s = 3, 1.2
    mu = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
    samples = _normal(20000, d, 0) * s + mu
    reference = _normal(20000, d, 1)
    gap = log_density_gap(samples, reference, _std_normal_log_prob)
    expected = -(d * (s * s - 1) + float(mu @ mu)) / 2
    se = math.sqrt(
        float(_std_normal_log_prob(samples).var() + _std_normal_log_prob(reference).var()) / 20000
    )
    assert abs(gap - expected) < 4 * se
    assert log_density_gap(reference, reference, _std_normal_log_prob) == 0.0


def test_log_density_gap_checks_log_prob_shape() -> None:
    x = _normal(10, 2, 0)
    with pytest.raises(ValueError, match="must have shape"):
        log_density_gap(x, x, lambda z: z.sum())


def test_sample_metrics_bundles_the_three_distances() -> None:
    x, y = _normal(300, 2, 0), _normal(200, 2, 1) + 0.3
    out = sample_metrics(x, y, generator=_gen(3))
    assert out == {
        "sliced_wasserstein": sliced_wasserstein(x, y, generator=_gen(3)),
        "mmd_rbf": mmd_rbf(x, y),
        "energy_distance": energy_distance(x, y),
    }
    assert all(isinstance(v, float) for v in out.values())
