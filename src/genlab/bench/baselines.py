"""Classical density baselines of table data, scored exactly as genlab's families are.

Each baseline is a scikit-learn density fitted in the per-column standardised or the
whitened coordinates of a run's data transform (whichever validates better), on one
dequantisation draw of the same training rows the families train on, and selected on the
same validation rows:

- a full-covariance Gaussian (the maximum-likelihood mean and covariance);
- `sklearn.mixture.GaussianMixture`: number of components and covariance type ("full",
  "tied", "diag", "spherical") chosen by validation NLL (Dempster et al. 1977, EM);
- `sklearn.neighbors.KernelDensity` with a Gaussian kernel, bandwidth chosen by validation
  NLL on a log grid (Parzen 1962).

`SklearnDensity` makes a fitted estimator a `GenerativeModel` of the standardised rows, and
`genlab.transform.Transformed` with the run's `ColumnTransform` makes it a density of the
raw rows: validation and test NLL come from `genlab.eval.likelihood` with the same
dequantisation draws, and samples from the same inverse transform, so a baseline and a
family differ only in the density of y.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.eval.likelihood import nll
from genlab.families import LikelihoodBound
from genlab.protocol import GenerativeModel
from genlab.transform import ColumnTransform, Transformed

__all__ = ["COVARIANCES", "Baseline", "SklearnDensity", "fit_baselines"]

COVARIANCES = ("full", "tied", "diag", "spherical")
MAX_COMPONENTS = 10
BANDWIDTHS = np.geomspace(0.05, 2.0, 40)  # KDE bandwidths in standardised units
EXACT = LikelihoodBound("exact")


class SklearnDensity(GenerativeModel):
    """A fitted scikit-learn density with `score_samples` and `sample` as a model of the
    standardised rows y (D,): `log_prob` = score_samples (nats), `sample` its own sampler
    seeded from the generator. It is fitted, not trained: `loss` is the NLL."""

    loss_is_nll = True

    def __init__(self, estimator: Any) -> None:
        super().__init__()
        self.estimator = estimator

    def log_prob(
        self, x: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        lp = self.estimator.score_samples(x.detach().double().cpu().numpy())  # (B,)
        return torch.from_numpy(np.asarray(lp, dtype=np.float64))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, cond)

    @torch.no_grad()
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if hasattr(self.estimator, "n_components"):  # GaussianMixture samples from its state
            self.estimator.random_state = seed
            y = self.estimator.sample(n)[0]
        else:
            y = self.estimator.sample(n, random_state=seed)
        return torch.from_numpy(np.asarray(y, dtype=np.float32))  # (n, D)


@dataclass
class Baseline:
    """A fitted, validation-selected baseline: the raw-unit model and how it was chosen."""

    name: str
    model: Transformed
    params: int
    val_nll: float
    notes: str
    fit_cpu_s: float


def _gmm_params(k: int, d: int, cov: str) -> int:
    per = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}
    return k * d + per[cov] + k - 1


def _candidates(
    y: np.ndarray, seed: int, components: int, bandwidths: Sequence[float]
) -> Iterator[tuple[str, Any, int, str]]:
    """(kind, fitted estimator, parameter count, description) of every candidate, fitted
    as it is drawn."""
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import KernelDensity

    n, d = y.shape
    gauss = GaussianMixture(1, covariance_type="full", random_state=seed).fit(y)
    yield "gaussian", gauss, _gmm_params(1, d, "full"), "full covariance, ML fit"
    for cov in COVARIANCES:
        for k in range(1, min(components, n // 2) + 1):
            gmm = GaussianMixture(k, covariance_type=cov, n_init=3, random_state=seed).fit(y)
            yield "gmm", gmm, _gmm_params(k, d, cov), f"{k} components, {cov}"
    for bw in bandwidths:
        kde = KernelDensity(bandwidth=float(bw)).fit(y)
        yield "kde", kde, n * d, f"bandwidth {bw:.3g} (standardised units)"


NAMES = {"gaussian": "full-covariance Gaussian", "gmm": "GaussianMixture", "kde": "Gaussian KDE"}


def fit_baselines(
    transforms: Mapping[str, ColumnTransform],
    train: Tensor,
    val: Tensor,
    settings: Any,
    *,
    seed: int = 0,
    components: int = MAX_COMPONENTS,
    bandwidths: Sequence[float] = tuple(BANDWIDTHS),
) -> list[Baseline]:
    """The three baselines of raw rows `train`, each selected by its mean NLL on the raw
    rows `val` (`settings`: the draws and seed of `genlab.eval.likelihood`) among 1 to
    `components` mixture components of each covariance type and the KDE `bandwidths`, in
    the coordinates of each of the named `transforms`."""
    best: dict[str, tuple[float, Transformed, int, str]] = {}
    seconds: dict[str, float] = {}  # CPU seconds of fitting and selecting each kind
    for space, transform in transforms.items():
        gen = torch.Generator().manual_seed(seed)
        y = transform(transform.dequantize(train.double(), gen))[0].numpy()  # (N, D) one draw
        start = time.process_time()
        for kind, est, params, what in _candidates(y, seed, components, bandwidths):
            model = Transformed(SklearnDensity(est), transform)
            score = float(nll(model, val, settings, EXACT).mean())
            if kind not in best or score < best[kind][0]:
                best[kind] = (score, model, params, f"{what}; {space} coordinates")
            now = time.process_time()
            seconds[kind] = seconds.get(kind, 0.0) + now - start
            start = now
    return [Baseline(NAMES[kind], model, params, score, what, seconds[kind])
            for kind, (score, model, params, what) in best.items()]  # fmt: skip
