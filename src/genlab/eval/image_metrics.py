"""Sample-quality metrics for 8x8 digit images in the feature space of the shipped digits
network (:mod:`genlab.eval.features`), the small-data analogue of FID / KID / precision-recall
on Inception-v3 features.

Images are (N, 1, 8, 8) in [-1, 1] (digits 0..16 -> :func:`genlab.eval.features.digits_to_unit`).
Everything after the network runs in float64 and returns Python floats.

- :func:`frechet_distance`: Frechet (2-Wasserstein) distance between Gaussian fits of two
  feature sets, ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` (Dowson & Landau, "The
  Frechet distance between multivariate normal distributions", J. Multivariate Anal. 1982;
  used as FID by Heusel et al., "GANs trained by a two time-scale update rule converge to a
  local Nash equilibrium", NeurIPS 2017, eq. 6).
- :func:`kernel_inception_distance`: unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (Binkowski, Sutherland, Arbel,
  Gretton, "Demystifying MMD GANs", ICLR 2018, sec. 2.3 and appendix; unbiased estimator of
  Gretton et al., JMLR 2012, Lemma 6).
- :func:`precision_recall`: k-NN manifold estimates (Kynkaanniemi, Karras, Laine, Lehtinen,
  Aila, "Improved precision and recall metric for assessing generative models", NeurIPS
  2019, eqs. 1-3).
- :func:`classifier_accuracy`: the network's head on class-conditional samples vs the
  requested labels (as in the "classification accuracy score" idea of Ravuri & Vinyals,
  NeurIPS 2019, but with a classifier trained on real data, judging generated data).

Every number should be reported next to :func:`noise_floor`: the same metrics for real test
images against real train images, at the same sample sizes, because the Frechet distance
(and, less, the other metrics) depend on the sample size (Binkowski et al. 2018, sec. 2.3;
Chong & Forsyth, "Effectively unbiased FID and Inception score and where to find them", CVPR
2020): a floor computed with 360 test images is not comparable to a score on 10,000 samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.data.digits import digits_split
from genlab.eval.features import DigitsFeatureNet, digits_to_unit, load_digits_features

__all__ = [
    "classifier_accuracy",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "image_features",
    "image_metrics",
    "kernel_inception_distance",
    "noise_floor",
    "precision_recall",
]

_BLOCK_ROWS = 1024  # rows of a pairwise-distance block


def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected images of shape (N, 1, 8, 8), got {shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 images, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: images hold NaN or infinite values")


def _check_features(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected features of shape (N >= 2, D), got {shape}")
    return x.detach().to(torch.float64)


@torch.no_grad()
def image_features(
    images: Tensor, net: DigitsFeatureNet | None = None, batch_size: int = 1024
) -> Tensor:
    """images (N, 1, 8, 8) in [-1, 1] -> float64 features (N, 128) of the digits network
    (the shipped one unless `net` is given)."""
    _check_images(images, "images")
    net = load_digits_features() if net is None else net
    device = next(net.parameters()).device
    out = [
        net.features(images[i : i + batch_size].to(device, torch.float32)).double().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out)  # (N, 128)


# ------------------------------------------------------------------------ Frechet distance


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    f = _check_features(features, "features")
    mu = f.mean(0)  # (D,)
    centred = f - mu  # (N, D)
    return mu, centred.T @ centred / (f.shape[0] - 1)  # (D,), (D, D)


def _trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2. S1 S2 is similar to the symmetric PSD
    matrix S1^{1/2} S2 S1^{1/2}, so the trace is the sum of the square roots of its
    eigenvalues; symmetric eigendecompositions keep everything real (round-off negatives are
    clamped to 0), unlike a general matrix square root of the non-symmetric product."""
    w, v = torch.linalg.eigh((sigma1 + sigma1.T) / 2)  # (D,), (D, D)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T  # (D, D) = S1^{1/2}
    m = root1 @ sigma2 @ root1  # (D, D)
    ev = torch.linalg.eigvalsh((m + m.T) / 2)  # (D,)
    return ev.clamp_min(0).sqrt().sum()


def frechet_distance_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2):
    ``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`` (Dowson & Landau 1982;
    Heusel et al. 2017, eq. 6). Squared 2-Wasserstein distance; computed in float64."""
    mu1, mu2, sigma1, sigma2 = (t.detach().to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (*mu1.shape,) * 2:
        raise ValueError(
            f"inconsistent shapes: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"sigma {tuple(sigma1.shape)}, {tuple(sigma2.shape)}"
        )
    diff = mu1 - mu2  # (D,)
    trace = sigma1.trace() + sigma2.trace() - 2 * _trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace)


def frechet_distance(x: Tensor, y: Tensor) -> float:
    """Frechet distance between Gaussian fits of feature sets x (N, D) and y (M, D).

    The plug-in estimate is biased upwards, by roughly O(D / N): compare values only at equal
    sample sizes (Binkowski et al. 2018, sec. 2.3), e.g. against :func:`noise_floor`."""
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


# ------------------------------------------------------------------------------------ KID


def _mmd2_unbiased_cubic(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Lemma 6) with k(a, b) = (a.b / d + 1)^3."""
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3  # (m, m)
    kyy = (y @ y.T / d + 1) ** 3  # (n, n)
    kxy = (x @ y.T / d + 1) ** 3  # (m, n)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_inception_distance(
    x: Tensor,
    y: Tensor,
    *,
    subset_size: int | None = None,
    n_subsets: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
    ``k(a, b) = (a.b / d + 1)^3`` between features x (N, D) and y (M, D), averaged over
    `n_subsets` pairs of random subsets of `subset_size` rows each (drawn without
    replacement within a subset; default ``min(1000, N, M)`` as in the paper).

    Returns (mean, std) over subsets; std is the spread of one subset estimate, the standard
    error of the mean is ``std / sqrt(n_subsets)`` (less, if subsets overlap heavily). The
    estimator is unbiased, so the mean can be slightly negative for equal distributions."""
    x, y = _check_features(x, "x"), _check_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(1000, x.shape[0], y.shape[0]) if subset_size is None else subset_size
    if not 2 <= size <= min(x.shape[0], y.shape[0]):
        raise ValueError(f"subset_size must lie in 2..{min(x.shape[0], y.shape[0])}, got {size}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    values = torch.empty(n_subsets, dtype=torch.float64)
    for i in range(n_subsets):
        ix = torch.randperm(x.shape[0], generator=generator)[:size]
        iy = torch.randperm(y.shape[0], generator=generator)[:size]
        values[i] = _mmd2_unbiased_cubic(x[ix], y[iy])
    std = values.std().item() if n_subsets > 1 else 0.0
    return values.mean().item(), std


# ---------------------------------------------------------------------- precision / recall


def _kth_neighbour_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x (N, D) to its k-th nearest other row. -> (N,)"""
    radii = []
    for i in range(0, x.shape[0], _BLOCK_ROWS):
        d = torch.cdist(x[i : i + _BLOCK_ROWS], x)  # (B, N), self at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # skip self
    return torch.cat(radii)


def _inside_manifold(query: Tensor, support: Tensor, radii: Tensor) -> Tensor:
    """For each query row, whether it lies in some ball B(support_j, radii_j). -> (Q,) bool"""
    inside = []
    for i in range(0, query.shape[0], _BLOCK_ROWS):
        d = torch.cdist(query[i : i + _BLOCK_ROWS], support)  # (B, S)
        inside.append((d <= radii).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, eqs. 1-3).

    The manifold of a set is the union of balls around its points with radius the distance
    to the point's k-th nearest neighbour in the same set. Precision is the fraction of
    `fake` (M, D) inside the manifold of `real` (N, D); recall the fraction of `real` inside
    the manifold of `fake`. Returns (precision, recall) in [0, 1]."""
    real, fake = _check_features(real, "real"), _check_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must lie in 1..{min(real.shape[0], fake.shape[0]) - 1}, got {k}")
    precision = _inside_manifold(fake, real, _kth_neighbour_radii(real, k))
    recall = _inside_manifold(real, fake, _kth_neighbour_radii(fake, k))
    return precision.double().mean().item(), recall.double().mean().item()


# ------------------------------------------------------------------------ bundled metrics


@torch.no_grad()
def classifier_accuracy(
    samples: Tensor, labels: Tensor, net: DigitsFeatureNet | None = None
) -> float:
    """Fraction of class-conditional samples (N, 1, 8, 8) in [-1, 1] that the digits
    network's head assigns to the requested `labels` (N,)."""
    _check_images(samples, "samples")
    if labels.shape != (samples.shape[0],):
        raise ValueError(f"labels: expected shape ({samples.shape[0]},), got {tuple(labels.shape)}")
    net = load_digits_features() if net is None else net
    device = next(net.parameters()).device
    pred = torch.cat(
        [
            net.logits(samples[i : i + 1024].to(device, torch.float32)).argmax(1).cpu()
            for i in range(0, samples.shape[0], 1024)
        ]
    )  # (N,)
    return (pred == labels.cpu().long()).double().mean().item()


def image_metrics(
    samples: Tensor,
    reference: Tensor,
    *,
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    net: DigitsFeatureNet | None = None,
    k: int = 3,
    kid_subset_size: int | None = None,
    kid_subsets: int = 100,
) -> dict[str, float]:
    """FD, KID (mean, std), precision, recall (and accuracy if `labels` are given) of
    `samples` (N, 1, 8, 8) against `reference` (M, 1, 8, 8), both in [-1, 1].

    Keys: ``n_samples``, ``n_reference``, ``fd``, ``kid``, ``kid_std``, ``precision``,
    ``recall`` and, with labels, ``accuracy``. Report them next to
    ``noise_floor(n_samples, n_reference)``."""
    _check_images(samples, "samples")
    _check_images(reference, "reference")
    net = load_digits_features() if net is None else net
    f_gen, f_ref = image_features(samples, net), image_features(reference, net)
    kid, kid_std = kernel_inception_distance(
        f_gen, f_ref, subset_size=kid_subset_size, n_subsets=kid_subsets, generator=generator
    )
    precision, recall = precision_recall(f_ref, f_gen, k=k)
    out: dict[str, float] = {
        "n_samples": samples.shape[0],
        "n_reference": reference.shape[0],
        "fd": frechet_distance(f_gen, f_ref),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }
    if labels is not None:
        out["accuracy"] = classifier_accuracy(samples, labels, net)
    return out


def noise_floor(
    n_samples: int = 360,
    n_reference: int = 1437,
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> dict[str, float]:
    """:func:`image_metrics` of real digits TEST images (as "samples") against real TRAIN
    images (as "reference") of :func:`genlab.data.digits.digits_split` -- what a perfect
    generator of the training distribution would score.

    Pass the sizes of the evaluation being reported: FD in particular shrinks with the
    number of samples, so a floor is only comparable at equal sizes. Subsets are drawn
    without replacement with `generator`; the test split has only 360 images and the train
    split 1437, so larger sizes are capped there (the sizes used are returned as
    ``n_samples`` / ``n_reference``). ``accuracy`` is the network's accuracy on the test
    images used (the ceiling for class-conditional samples). ``options`` are the other
    keywords of :func:`image_metrics` (``net``, ``k``, ``kid_subset_size``, ``kid_subsets``)."""
    split = digits_split()
    n_s = min(n_samples, split.test_x.shape[0])
    n_r = min(n_reference, split.train_x.shape[0])
    if n_s < 2 or n_r < 2:
        raise ValueError(f"need at least 2 samples and reference images, got {n_s}, {n_r}")
    i_s = torch.randperm(split.test_x.shape[0], generator=generator)[:n_s]
    i_r = torch.randperm(split.train_x.shape[0], generator=generator)[:n_r]
    return image_metrics(
        digits_to_unit(split.test_x[i_s]),
        digits_to_unit(split.train_x[i_r]),
        labels=split.test_y[i_s],
        generator=generator,
        **options,
    )
