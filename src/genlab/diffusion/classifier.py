"""Noise-aware classifiers p(y | x, sigma) for classifier guidance.

Dhariwal & Nichol (2021, Sec. 4) train a classifier p_phi(y | x_t, t) on the noisy states of
the same forward process as the diffusion model, with a cross-entropy loss at random times.
Here it is trained on any genlab path and evaluated in canonical coordinates: like
`genlab.diffusion.denoiser.Denoiser`, `NoiseAwareClassifier.forward(x, sigma)` maps sigma to
the path's time t, scales x~ to x_t = alpha(t) x~ and feeds (x_t, path.net_time(t)) to the
network. So a classifier trained on the path of a diffusion model plugs into
`genlab.diffusion.guidance.ClassifierGuidance` next to that model's denoiser.

`MixtureBayesClassifier` is the exact posterior p(y | x, sigma) for classes given by analytic
densities (e.g. one `genlab.data.gmm.GaussianMixture` per class): the ground truth guidance is
tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.diffusion.objectives import NoiseDistribution, UniformT
from genlab.diffusion.paths import NoisePath
from genlab.nets.mlp import sinusoidal_embedding


class MLPClassifier(nn.Module):
    """x (B, D), t (B,) -> logits (B, num_classes): an MLP with a sinusoidal time embedding
    added to the first hidden layer (the time conditioning of `genlab.nets.mlp.MLP`)
    and a class-logit head."""

    def __init__(
        self, dim: int, num_classes: int, hidden: int = 128, depth: int = 3, time_dim: int = 64
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        self.time_dim = time_dim
        self.inp = nn.Linear(dim, hidden)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        blocks: list[nn.Module] = []
        for _ in range(depth - 1):
            blocks += [nn.SiLU(), nn.Linear(hidden, hidden)]
        self.body = nn.Sequential(*blocks, nn.SiLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t, self.time_dim).to(x.dtype)  # (B, time_dim)
        h = self.inp(x) + self.time_mlp(emb)  # (B, hidden)
        return self.body(h)  # (B, num_classes)


class NoiseAwareClassifier(nn.Module):
    """p(y | x, sigma) from a network ``net(x_t, net_time) -> (B, C)`` logits on a path.

    ``loss(x0, cond)`` is the per-example cross-entropy -log p(y | x_t, t) with
    x_t = alpha(t) x0 + sigma(t) eps and t drawn from ``noise`` (Dhariwal & Nichol 2021,
    Sec. 4: the classifier is trained on noisy samples of the diffusion forward process).
    Use the same path as the diffusion model, and its training noise distribution or
    `UniformT` (the default) so that every noise level a sampler visits is covered.
    The trainer only needs ``loss``; this is not a generative model (no ``sample``).

    ``forward(x, sigma)`` takes the canonical state x = x0 + sigma eps (sigma (B,) or a
    scalar) and returns logits (B, C), mapping to the path like `Denoiser` does.
    """

    def __init__(
        self, net: nn.Module, path: NoisePath, noise: NoiseDistribution | None = None
    ) -> None:
        super().__init__()
        self.net = net
        self.path = path
        self.noise = UniformT() if noise is None else noise

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        x_t, c = self.path.from_canonical(x, sigma)  # (B, ...)
        return self.net(x_t, self.path.net_time(c.t).to(x.dtype))  # (B, C)

    def loss(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-example cross-entropy (B,) of the labels ``cond`` at a random noise level."""
        if cond is None:
            raise ValueError("NoiseAwareClassifier.loss needs class labels (cond)")
        t = self.noise.sample_t(x.shape[0], self.path, generator=generator).to(x.device)
        c = self.path.coefs(t)  # float64, (B,)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_t = self.path.add_noise(x, eps, c)  # (B, ...)
        logits = self.net(x_t, self.path.net_time(t).to(x.dtype))  # (B, C)
        return F.cross_entropy(logits, cond.long(), reduction="none")


class NoisyDensity(Protocol):
    """Anything with the log-density (B,) of its noised marginal, e.g. `GaussianMixture`."""

    def log_prob(self, x: Tensor, sigma: Tensor | float = ...) -> Tensor: ...


class MixtureBayesClassifier:
    """The exact noisy posterior by Bayes' rule, for classes with known noised densities:

        log p(y | x, sigma) = log pi_y + log p_y(x; sigma)
                              - logsumexp_c [log pi_c + log p_c(x; sigma)]

    where p_y(.; sigma) is class y's data density convolved with N(0, sigma^2 I) (for a Gaussian
    mixture: the variances grow by sigma^2, Karras et al. 2022, Sec. 2). The unconditional
    noised density is sum_y pi_y p_y(x; sigma), so the score of the union mixture plus
    grad_x log p(y | x, sigma) is exactly the score of class y.

    Args:
        classes: one density per class, each with ``log_prob(x, sigma) -> (B,)``.
        prior: (C,) class probabilities pi (normalised here); uniform if None.

    ``classifier(x, sigma) -> (B, C)`` log-probabilities, differentiable in x.
    """

    def __init__(self, classes: Sequence[NoisyDensity], prior: Tensor | None = None) -> None:
        if len(classes) < 2:
            raise ValueError("a classifier needs at least two classes")
        self.classes = list(classes)
        p = torch.ones(len(classes), dtype=torch.float64) if prior is None else prior
        p = torch.as_tensor(p, dtype=torch.float64)
        if p.shape != (len(classes),) or bool((p <= 0).any()):
            raise ValueError(f"prior must be positive with shape ({len(classes)},)")
        self.log_prior = torch.log(p / p.sum())  # (C,)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        log_joint = torch.stack(
            [density.log_prob(x, sigma) for density in self.classes], dim=-1
        ) + self.log_prior.to(x.device)  # (B, C), float64
        return torch.log_softmax(log_joint, dim=-1).to(x.dtype)
