"""Image metrics checked on exactly solvable cases: Gaussian closed forms for the Frechet
distance, unbiasedness of KID at equal distributions, brute-force k-NN manifolds for
precision/recall, and the real-vs-real noise floor against clearly bad samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor

from genlab.data.digits import digits_split
from genlab.eval.features import digits_to_unit
from genlab.eval.image_metrics import (
    classifier_accuracy,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    image_metrics,
    kernel_inception_distance,
    noise_floor,
    precision_recall,
)

F64 = torch.float64


def _spd(d: int, g: torch.Generator) -> Tensor:
    a = torch.randn(d, d, generator=g, dtype=F64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=F64)


def _closed_form_fd(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """Reference via scipy's general matrix square root (an independent method)."""
    root = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())
    root = np.real(root)
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(s1.numpy() + s2.numpy() - 2 * root))


# ---------------------------------------------------------------------- Frechet distance


def test_fd_of_a_set_with_itself_is_zero() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g, dtype=F64) @ _spd(16, g)
    x[:, :3] = 0.0  # rank-deficient covariance, as with dead ReLU features
    assert abs(frechet_distance(x, x)) < 1e-9 * gaussian_stats(x)[1].trace().item()


def test_fd_exact_parameters_diagonal_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(6, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    s1 = torch.rand(6, generator=g, dtype=F64) + 0.1
    s2 = torch.rand(6, generator=g, dtype=F64) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum()
    got = frechet_distance_from_stats(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert got == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)


def test_fd_exact_parameters_match_general_matrix_sqrt() -> None:
    g = torch.Generator().manual_seed(2)
    mu1, mu2 = torch.randn(5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    s1, s2 = _spd(5, g), _spd(5, g)
    got = frechet_distance_from_stats(mu1, s1, mu2, s2)
    assert got == pytest.approx(_closed_form_fd(mu1, s1, mu2, s2), rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_fd_of_gaussian_samples_matches_closed_form(shift: float) -> None:
    """Mean of R estimates on N samples lies within 5 standard errors of the closed form,
    plus an allowance for the O(d tr(S) / N) plug-in bias."""
    g = torch.Generator().manual_seed(3)
    d, n, reps = 4, 20_000, 20
    s1, s2 = _spd(d, g), _spd(d, g)
    mu1, mu2 = torch.zeros(d, dtype=F64), torch.full((d,), shift, dtype=F64)
    l1, l2 = torch.linalg.cholesky(s1), torch.linalg.cholesky(s2)
    estimates = torch.tensor(
        [
            frechet_distance(
                mu1 + torch.randn(n, d, generator=g, dtype=F64) @ l1.T,
                mu2 + torch.randn(n, d, generator=g, dtype=F64) @ l2.T,
            )
            for _ in range(reps)
        ]
    )
    stderr = estimates.std().item() / math.sqrt(reps)
    bias = d * (s1.trace() + s2.trace()).item() / n
    expected = _closed_form_fd(mu1, s1, mu2, s2)
    assert abs(estimates.mean().item() - expected) < 5 * stderr + bias


def test_fd_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))


# ------------------------------------------------------------------------------------ KID


def test_kid_near_zero_for_same_distribution_and_positive_for_shift() -> None:
    """Subsets of 100 from pools of 10,000 barely overlap, so the subset estimates are
    nearly independent and std / sqrt(n_subsets) is their standard error."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10_000, 8, generator=g, dtype=F64)
    y = torch.randn(10_000, 8, generator=g, dtype=F64)
    mean, std = kernel_inception_distance(x, y, subset_size=100, n_subsets=50, generator=g)
    assert abs(mean) < 4 * std / math.sqrt(50)
    mean_s, std_s = kernel_inception_distance(
        x, y + 1.0, subset_size=100, n_subsets=50, generator=g
    )
    assert mean_s > 10 * std_s / math.sqrt(50) and mean_s > 10 * abs(mean)


def test_kid_is_reproducible_with_generator() -> None:
    x, y = torch.randn(300, 5), torch.randn(300, 5) + 0.2
    a = kernel_inception_distance(x, y, subset_size=50, generator=torch.Generator().manual_seed(0))
    b = kernel_inception_distance(x, y, subset_size=50, generator=torch.Generator().manual_seed(0))
    assert a == b


# ---------------------------------------------------------------------- precision / recall


def _brute_force_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(a: np.ndarray) -> np.ndarray:
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def coverage(q: np.ndarray, s: np.ndarray, r: np.ndarray) -> float:
        d = np.sqrt(((q[:, None] - s[None]) ** 2).sum(-1))
        return float(np.mean([(d[i] <= r).any() for i in range(len(q))]))

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_one_for_identical_sets() -> None:
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(5))
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


def test_precision_drops_for_off_manifold_samples() -> None:
    g = torch.Generator().manual_seed(6)
    real = torch.randn(300, 6, generator=g)
    fake = real.clone()
    fake[150:] += 100.0  # half of the samples far away from the data
    precision, _ = precision_recall(real, fake)
    assert precision == pytest.approx(0.5)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k: int) -> None:
    g = torch.Generator().manual_seed(7)
    real = torch.randn(120, 3, generator=g, dtype=F64)
    fake = 1.3 * torch.randn(90, 3, generator=g, dtype=F64) + 0.4
    got = precision_recall(real, fake, k=k)
    assert got == pytest.approx(_brute_force_pr(real.numpy(), fake.numpy(), k))


# ------------------------------------------------------------- on digits, with the asset


def test_noise_floor_is_small_against_noise_images() -> None:
    n = 200
    g = torch.Generator().manual_seed(8)
    floor = noise_floor(n, generator=g, kid_subsets=20)
    assert floor["n_samples"] == n and floor["n_reference"] == 1437
    split = digits_split()
    noise = torch.randn(n, 1, 8, 8, generator=g).clamp(-1, 1)
    labels = torch.randint(0, 10, (n,), generator=g)
    bad = image_metrics(
        noise, digits_to_unit(split.train_x), labels=labels, generator=g, kid_subsets=20
    )
    assert floor["fd"] < 0.1 * bad["fd"]
    assert floor["kid"] < 0.05 * bad["kid"]
    assert floor["precision"] > 0.7 > 0.2 > bad["precision"]
    assert floor["recall"] > 0.7 > 0.2 > bad["recall"]
    assert floor["accuracy"] > 0.95 > 0.3 > bad["accuracy"]


def test_noise_floor_caps_sizes_at_split_sizes() -> None:
    floor = noise_floor(10_000, 10_000, generator=torch.Generator().manual_seed(0), kid_subsets=2)
    assert (floor["n_samples"], floor["n_reference"]) == (360, 1437)


def test_classifier_accuracy_counts_requested_labels() -> None:
    split = digits_split()
    x, y = digits_to_unit(split.test_x[:50]), split.test_y[:50]
    acc = classifier_accuracy(x, y)
    assert acc > 0.9
    assert classifier_accuracy(x, (y + 1) % 10) <= 1 - acc + 1e-12


def test_image_metrics_rejects_bad_images() -> None:
    good = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        image_metrics(torch.zeros(4, 8, 8), good)
    with pytest.raises(ValueError, match="NaN"):
        image_metrics(torch.full((4, 1, 8, 8), float("nan")), good)
