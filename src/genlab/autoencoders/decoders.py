"""Observation likelihoods p(x | z) for VAE decoders: Bernoulli, Gaussian, discretised logistic.

A likelihood turns the raw decoder output `params` (..., n_params * D) into a distribution over
flat data x (..., D). It owns only the few parameters a likelihood itself may have (a learned
Gaussian variance); the network that produces `params` belongs to the model.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.density import LN2, LOG_2PI


class Likelihood(nn.Module, ABC):
    """p(x | params) factorised over the D data dimensions.

    `n_params` is the number of decoder outputs per data dimension; the decoder net must return
    (..., n_params * D). Every method broadcasts over leading dimensions.
    """

    n_params: int = 1
    discrete: bool = False  # a probability of discrete values, not a density

    @abstractmethod
    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x | params) in nats, summed over the last (data) dimension: (..., D) -> (...)."""

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor:
        """E[x | params], (..., D)."""

    @abstractmethod
    def sample(self, params: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """One draw x ~ p(x | params), (..., D)."""


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli per dimension with logits (Kingma & Welling 2014, appendix C.1):
    log p(x) = sum_d x_d log sigmoid(l_d) + (1 - x_d) log sigmoid(-l_d).

    x may be binary or in [0, 1] (the usual cross-entropy on grey levels; then not normalised).
    """

    n_params = 1

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        x = x.expand_as(params)
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian N(x; mu, sigma^2) (Kingma & Welling 2014, appendix C.2):
    log p(x) = -1/2 sum_d [ (x_d - mu_d)^2 / sigma_d^2 + 2 log sigma_d + log 2 pi ].

    variance="fixed": sigma is the constant `sigma`; "learned": one log sigma per dimension,
    a parameter initialised at `sigma` (needs `dim`); "predicted": the decoder outputs
    (mu, log sigma) per dimension (n_params = 2). log sigma is clamped to [-7, 7] when learned
    or predicted, so the density stays bounded.
    """

    def __init__(
        self,
        variance: Literal["fixed", "learned", "predicted"] = "fixed",
        *,
        sigma: float = 1.0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if variance not in ("fixed", "learned", "predicted"):
            raise ValueError(
                f"variance must be 'fixed', 'learned' or 'predicted', got {variance!r}"
            )
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.variance = variance
        self.n_params = 2 if variance == "predicted" else 1
        self.log_sigma: nn.Parameter | None = None
        self.fixed_log_sigma = math.log(sigma)
        if variance == "learned":
            if dim is None:
                raise ValueError("variance='learned' needs the data dimension `dim`")
            self.log_sigma = nn.Parameter(torch.full((dim,), math.log(sigma)))

    def _mu_log_sigma(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.variance == "predicted":
            mu, log_sigma = params.chunk(2, dim=-1)  # (..., D) each
            return mu, log_sigma.clamp(-7.0, 7.0)
        if self.log_sigma is not None:
            return params, self.log_sigma.clamp(-7.0, 7.0).expand_as(params)
        return params, torch.full_like(params, self.fixed_log_sigma)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mu, log_sigma = self._mu_log_sigma(params)
        z = (x - mu) * torch.exp(-log_sigma)
        return -0.5 * (z.square() + 2.0 * log_sigma + LOG_2PI).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return self._mu_log_sigma(params)[0]

    def sample(self, params: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        mu, log_sigma = self._mu_log_sigma(params)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(log_sigma) * eps


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(-a)) for a > 0, accurate for small and large a (Maechler 2012)."""
    return torch.where(a < LN2, torch.log(-torch.expm1(-a)), torch.log1p(-torch.exp(-a)))


class DiscretizedLogisticLikelihood(Likelihood):
    """Discretised logistic (Salimans et al. 2017, PixelCNN++, eq. 2), one mixture component.

    Data live on `num_levels` equally spaced values in [low, high] (default 256 levels in
    [-1, 1]); with bin half-width h = (high - low) / (2 (num_levels - 1)),

        P(x) = sigmoid((x + h - mu) / s) - sigmoid((x - h - mu) / s)      interior bins,
        P(low) = sigmoid((low + h - mu) / s),  P(high) = 1 - sigmoid((high - h - mu) / s),

    so the probabilities of all bins sum to 1 exactly. The difference of sigmoids is taken in
    log space through sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)), which
    is stable even far in the tails (no pdf fallback needed). The decoder outputs (mu, log s).
    """

    discrete = True

    n_params = 2

    def __init__(self, num_levels: int = 256, *, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        if num_levels < 2 or not high > low:
            raise ValueError(
                f"need num_levels >= 2 and high > low, got {num_levels}, [{low}, {high}]"
            )
        self.num_levels, self.low, self.high = num_levels, low, high
        self.half_width = (high - low) / (2 * (num_levels - 1))

    def _mu_log_s(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_s = params.chunk(2, dim=-1)  # (..., D) each
        return mu, log_s.clamp(min=-7.0)

    def log_prob_per_dim(self, params: Tensor, x: Tensor) -> Tensor:
        """log P(x_d) per dimension, (..., D). x must lie on the grid."""
        mu, log_s = self._mu_log_s(params)
        inv_s = torch.exp(-log_s)
        a = (x - mu + self.half_width) * inv_s  # upper edge, standardised
        b = (x - mu - self.half_width) * inv_s  # lower edge
        interior = F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(2.0 * self.half_width * inv_s)
        eps = 1e-3 * self.half_width
        lowest = x < self.low + eps
        highest = x > self.high - eps
        return torch.where(
            lowest, F.logsigmoid(a), torch.where(highest, F.logsigmoid(-b), interior)
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return self.log_prob_per_dim(params, x).sum(-1)

    def quantize(self, x: Tensor) -> Tensor:
        """Snap x to the nearest grid value in [low, high]."""
        step = 2.0 * self.half_width
        return torch.round((x.clamp(self.low, self.high) - self.low) / step) * step + self.low

    def mean(self, params: Tensor) -> Tensor:
        """The logistic location clamped to [low, high] (the discretised mean up to edge mass)."""
        return self._mu_log_s(params)[0].clamp(self.low, self.high)

    def sample(self, params: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        mu, log_s = self._mu_log_s(params)
        u = torch.rand(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        u = u.clamp(1e-6, 1.0 - 1e-6)
        return self.quantize(mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u)))
