"""Analytic Gaussian mixtures: exact samples, noised log-density, score and denoiser.

The mixture p0 = sum_k w_k N(mu_k, diag(s_k^2)) stays a Gaussian mixture under the
forward process x = x0 + sigma * eps (Karras et al. 2022, "Elucidating the design
space of diffusion-based generative models", Eq. 1 and Sec. 2):

    p_sigma(x) = sum_k w_k N(x; mu_k, diag(s_k^2 + sigma^2)).

Its score and the posterior mean E[x0 | x] (Tweedie's formula, Efron 2011,
D = x + sigma^2 * grad log p_sigma) are available in closed form, which makes the
mixture the ground truth that samplers, guidance and likelihoods are tested against.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


class GaussianMixture:
    """A Gaussian mixture with diagonal covariances, computed in float64.

    Args:
        means: (K, D) component means.
        stds: (K,) isotropic or (K, D) per-coordinate standard deviations.
        weights: (K,) non-negative weights; they are normalised to sum to one.
        sigma_min, sigma_max: default noise-level range used by samplers when the
            mixture is called as a denoiser (EDM defaults 0.002 and 80).

    Calling the object, ``gmm(x, sigma, cond=None)``, is the exact denoiser
    ``D(x, sigma) = E[x0 | x0 + sigma * eps = x]``. ``cond`` (optional, (B,) long)
    is a component label that restricts the mixture to that component.
    """

    def __init__(
        self,
        means: Tensor,
        stds: Tensor | float,
        weights: Tensor | None = None,
        *,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
        if self.means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(self.means.shape)}")
        k, d = self.means.shape
        s = torch.as_tensor(stds, dtype=torch.float64)
        if s.ndim == 0:
            s = s.expand(k)
        if s.ndim == 1:
            s = s[:, None].expand(k, d)
        if s.shape != (k, d) or bool((s <= 0).any()):
            raise ValueError("stds must be positive with shape (), (K,) or (K, D)")
        self.stds = s.contiguous()  # (K, D)
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights
        w = torch.as_tensor(w, dtype=torch.float64)
        if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be non-negative with shape (K,)")
        self.weights = w / w.sum()  # (K,)
        self._isotropic = bool((self.stds == self.stds[:, :1]).all())
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def ring(
        cls, k: int = 8, radius: float = 4.0, std: float = 0.3, dim: int = 2
    ) -> GaussianMixture:
        """``k`` equal-weight components on a circle of ``radius`` in the first two coordinates."""
        if dim < 2:
            raise ValueError("ring needs dim >= 2")
        angle = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        means = torch.zeros(k, dim, dtype=torch.float64)
        means[:, 0] = radius * torch.cos(angle)
        means[:, 1] = radius * torch.sin(angle)
        return cls(means, std)

    @classmethod
    def random(
        cls, k: int = 16, dim: int = 64, seed: int = 20240607, std: float = 0.5
    ) -> GaussianMixture:
        """Random mixture; the defaults reproduce the anchors' ``gmm16_D64`` bed exactly.

        numpy ``default_rng(seed)``: means = 0.5 * normal(0, 2, (k, dim)), then
        weights = dirichlet(ones(k)); every component has std ``std``.
        """
        rng = np.random.default_rng(seed)
        means = 0.5 * rng.normal(0.0, 2.0, (k, dim))
        weights = rng.dirichlet(np.ones(k))
        return cls(torch.from_numpy(means), std, torch.from_numpy(weights))

    # ----------------------------------------------------------------- properties
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Tensor:
        """(D,) mean of p0."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """(D, D) covariance of p0."""
        mu = self.mean()
        dm = self.means - mu  # (K, D)
        within = torch.diag(self.weights @ self.stds**2)
        return within + dm.T @ (self.weights[:, None] * dm)

    # ----------------------------------------------------------------- sampling
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``n`` exact samples (float64, shape (n, D)); optionally their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)  # (n, D)
        x = self.means[labels] + self.stds[labels] * eps
        return (x, labels) if return_labels else x

    # ----------------------------------------------------------------- densities
    def _log_weights(self, b: int, cond: Tensor | None, device: torch.device) -> Tensor:
        """(B, K) log mixture weights; with ``cond`` only the labelled component (weight 1)."""
        logw = torch.log(self.weights.to(device)).expand(b, -1)
        if cond is None:
            return logw
        mask = torch.nn.functional.one_hot(cond.long().to(device), self.num_components).bool()
        return torch.zeros_like(logw).masked_fill(~mask, -math.inf)

    def _posterior(
        self, x: Tensor, sigma: Tensor | float, cond: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """log(w_k N(x; mu_k, var_k)) (B, K), and the (B, D) sums over k of r_k (mu_k - x) / var_k
        and of r_k sigma^2 / var_k (mu_k - x) (score and denoiser shift), all in float64."""
        x64 = x.to(torch.float64).flatten(1)  # (B, D)
        b, d = x64.shape
        dev = x64.device
        sig = torch.as_tensor(sigma, dtype=torch.float64, device=dev)
        sig2 = sig.reshape(-1, 1) ** 2 if sig.ndim > 0 else sig**2  # (B, 1) or ()
        mu = self.means.to(dev)  # (K, D)
        logw = self._log_weights(b, cond, dev)
        if self._isotropic:  # matmul form, no (B, K, D) intermediates
            var = self.stds[:, 0].to(dev) ** 2 + sig2  # (B|1, K)
            sq = (x64**2).sum(1, keepdim=True) - 2 * x64 @ mu.T + (mu**2).sum(1)  # (B, K)
            terms = logw - 0.5 * (sq.clamp_min(0) / var + d * torch.log(2 * math.pi * var))
            resp = torch.softmax(terms, dim=-1)  # (B, K)
            a, c = resp / var, resp * (sig2 / var)  # (B, K)
            score = a @ mu - a.sum(1, keepdim=True) * x64
            shift = c @ mu - c.sum(1, keepdim=True) * x64
            return terms, score, shift
        var = self.stds.to(dev) ** 2 + (sig2[:, :, None] if sig.ndim > 0 else sig2)  # (B|1,K,D)
        diff = mu - x64[:, None, :]  # (B, K, D)
        log_n = -0.5 * ((diff**2 / var) + torch.log(2 * math.pi * var)).sum(-1)  # (B, K)
        terms = logw + log_n
        resp = torch.softmax(terms, dim=-1)[:, :, None]  # (B, K, 1)
        score = (resp * diff / var).sum(1)
        shift = (resp * ((var - self.stds.to(dev) ** 2) / var) * diff).sum(1)
        return terms, score, shift

    def log_prob(
        self, x: Tensor, sigma: Tensor | float = 0.0, cond: Tensor | None = None
    ) -> Tensor:
        """Exact log-density (B,) of the noised marginal p_sigma at x (B, D); float64.

        p_sigma = sum_k w_k N(mu_k, diag(s_k^2 + sigma^2)); sigma a float or a (B,) tensor.
        With ``cond`` it is the density of the labelled component alone.
        """
        terms, _, _ = self._posterior(x, sigma, cond)
        return torch.logsumexp(terms, dim=-1)

    def score(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """Exact score grad_x log p_sigma(x) = sum_k r_k (mu_k - x) / (s_k^2 + sigma^2),
        shape (B, D), in x's dtype."""
        _, score, _ = self._posterior(x, sigma, cond)
        return score.reshape(x.shape).to(x.dtype)

    def denoiser(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """Exact posterior mean E[x0 | x] (Tweedie), shape (B, D), in x's dtype.

        D(x, sigma) = sum_k r_k(x) [mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)]
                    = x + sum_k r_k sigma^2 / (s_k^2 + sigma^2) (mu_k - x),
        r_k the posterior responsibilities (softmax of the log joint, i.e. logsumexp).
        """
        _, _, shift = self._posterior(x, sigma, cond)
        return (x.to(torch.float64) + shift.reshape(x.shape)).to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        return self.denoiser(x, sigma, cond)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, D={self.dim})"
