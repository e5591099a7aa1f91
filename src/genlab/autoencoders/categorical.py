"""Categorical latents: Gumbel-softmax / Concrete relaxation and the score-function estimator.

The latent is M independent categorical variables with K classes each, carried as one-hot
vectors (M * K numbers, flattened for the decoder). Three gradient estimators of the same ELBO:

- "gumbel": the Gumbel-softmax / Concrete relaxation (Jang et al. 2017, eq. 1; Maddison et al.
  2017, the Concrete distribution): the decoder sees softmax((logits + g) / tau),
  g ~ Gumbel(0, 1); biased for tau > 0, its variance growing as tau -> 0.
- "straight_through": the forward pass uses the hard one-hot argmax(logits + g) (an exact sample,
  Gumbel-max), the backward pass the soft sample's gradient (Jang et al. 2017, section 2.2).
- "reinforce": the score-function estimator (Williams 1992) with a baseline, unbiased:
  grad E_q[f] = E_q[grad f + (f - b) grad log q(z)], b independent of z (Mnih & Gregor 2014,
  section 3.1).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.autoencoders.decoders import Likelihood
from genlab.autoencoders.vae import LatentVAE, mlp_pair

Estimator = Literal["gumbel", "straight_through", "reinforce"]
Baseline = Literal["none", "moving_average", "leave_one_out"]


def sample_gumbel(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Standard Gumbel noise g = -log(-log u), u ~ U(0, 1) (Gumbel 1954; Jang et al. 2017)."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    tiny = torch.finfo(u.dtype).tiny
    neg_log_u = -torch.log(u.clamp(min=tiny))  # Exp(1) noise, > 0
    return -torch.log(neg_log_u.clamp(min=tiny))


def gumbel_softmax(
    logits: Tensor,
    tau: float,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A Gumbel-softmax (Concrete) sample over the last dimension (Jang et al. 2017, eq. 1):
    y_k = exp((l_k + g_k) / tau) / sum_j exp((l_j + g_j) / tau).

    argmax_k y_k = argmax_k (l_k + g_k) is an exact draw from softmax(l) (Gumbel-max trick), and
    y tends to that one-hot vector as tau -> 0. With hard=True the value is that one-hot vector
    and the gradient is the soft sample's (straight-through, section 2.2):
    y_hard - stop_grad(y_soft) + y_soft.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    g = sample_gumbel(
        tuple(logits.shape), generator=generator, dtype=logits.dtype, device=logits.device
    )
    y_soft = torch.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return y_soft
    y_hard = F.one_hot(y_soft.argmax(-1), logits.shape[-1]).to(y_soft.dtype)
    return y_hard - y_soft.detach() + y_soft


def gumbel_temperature(
    step: int, *, tau0: float = 1.0, rate: float = 1e-4, tau_min: float = 0.5
) -> float:
    """Annealed temperature tau = max(tau_min, tau0 exp(-rate * step)) (Jang et al. 2017,
    section 4, which anneals from 1 towards 0.5 with r in {1e-5, 1e-4})."""
    return max(tau_min, tau0 * math.exp(-rate * step))


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    """KL(Cat(softmax(l)) || Uniform(K)) = sum_k q_k log q_k + log K per variable, summed over
    the M variables: logits (..., M, K) -> (...)."""
    log_q = torch.log_softmax(logits, dim=-1)
    k = logits.shape[-1]
    return (log_q.exp() * log_q).sum(-1).sum(-1) + logits.shape[-2] * math.log(k)


def reinforce_surrogate(f: Tensor, log_q: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """A surrogate whose value is f and whose gradient is grad f + (f - b) grad log q(z)
    (Williams 1992; Schulman et al. 2015, stochastic computation graphs, surrogate loss):

        f + stop_grad(f - b) * (log q - stop_grad(log q)).

    Unbiased for grad E_q[f(z)] whenever b does not depend on z, since E_q[grad log q] = 0
    (Mnih & Gregor 2014, section 3.1).
    """
    return f + (f.detach() - baseline) * (log_q - log_q.detach())


def leave_one_out_baseline(f: Tensor) -> Tensor:
    """b_s = mean of the other S - 1 samples' f along dim 0 (Kool et al. 2019; Mnih & Rezende
    2016, VIMCO): unbiased
    because b_s is independent of z_s. f (S, ...) with S >= 2."""
    s = f.shape[0]
    if s < 2:
        raise ValueError("the leave-one-out baseline needs n_samples >= 2")
    f = f.detach()
    return (f.sum(0, keepdim=True) - f) / (s - 1)


class CategoricalVAE(LatentVAE):
    """VAE with M categorical latents of K classes and a uniform prior (Jang et al. 2017,
    section 4). The encoder maps (B, D) to logits (B, M * K); the decoder maps the flattened
    (relaxed) one-hot latents (N, M * K) to likelihood parameters.

    `loss` is the negative ELBO with the analytic KL of the discrete posterior to the uniform
    prior, its reconstruction term estimated by `estimator` with `n_samples` draws per example:
    "gumbel" / "straight_through" at temperature `tau` (set it from `gumbel_temperature` while
    training), or "reinforce" with `baseline` "none", "moving_average" (an exponential moving
    average of the batch-mean reconstruction with `momentum`, updated in training mode only,
    after use) or "leave_one_out" (needs n_samples >= 2). `elbo`, `log_prob` (IWAE) and
    `sample` use exact discrete latents whatever the estimator.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        data_shape: tuple[int, ...],
        n_latents: int,
        n_classes: int,
        *,
        estimator: Estimator = "gumbel",
        tau: float = 1.0,
        baseline: Baseline = "moving_average",
        n_samples: int = 1,
        momentum: float = 0.9,
    ) -> None:
        super().__init__(encoder, decoder, likelihood, data_shape, n_latents * n_classes)
        if estimator not in ("gumbel", "straight_through", "reinforce"):
            raise ValueError(f"unknown estimator {estimator!r}")
        if baseline not in ("none", "moving_average", "leave_one_out"):
            raise ValueError(f"unknown baseline {baseline!r}")
        if estimator == "reinforce" and baseline == "leave_one_out" and n_samples < 2:
            raise ValueError("the leave-one-out baseline needs n_samples >= 2")
        self.n_latents, self.n_classes = n_latents, n_classes
        self.estimator: Estimator = estimator
        self.baseline: Baseline = baseline
        self.tau, self.n_samples, self.momentum = tau, n_samples, momentum
        self.register_buffer("baseline_value", torch.zeros(()))
        self.register_buffer("baseline_count", torch.zeros((), dtype=torch.long))

    @classmethod
    def with_mlp(
        cls,
        data_shape: tuple[int, ...],
        n_latents: int,
        n_classes: int,
        likelihood: Likelihood,
        *,
        hidden: int = 256,
        depth: int = 2,
        estimator: Estimator = "gumbel",
        tau: float = 1.0,
        baseline: Baseline = "moving_average",
        n_samples: int = 1,
    ) -> CategoricalVAE:
        """A CategoricalVAE whose encoder and decoder are `mlp(...)` nets."""
        latent = n_latents * n_classes
        nets = mlp_pair(data_shape, latent, latent, likelihood, hidden=hidden, depth=depth)
        return cls(
            *nets, likelihood, data_shape, n_latents, n_classes,
            estimator=estimator, tau=tau, baseline=baseline, n_samples=n_samples,
        )  # fmt: skip

    def _logits(self, stats: Tensor) -> Tensor:
        return stats.reshape(*stats.shape[:-1], self.n_latents, self.n_classes)  # (B, M, K)

    def posterior_sample(
        self, stats: Tensor, n: int, *, generator: torch.Generator | None
    ) -> Tensor:
        """Exact one-hot draws (Gumbel-max), no gradient: (n, B, M * K)."""
        logits = self._logits(stats).detach()
        g = sample_gumbel(
            (n, *logits.shape), generator=generator, dtype=logits.dtype, device=logits.device
        )
        z = F.one_hot((logits + g).argmax(-1), self.n_classes).to(logits.dtype)  # (n, B, M, K)
        return z.flatten(-2)

    def posterior_log_prob(self, stats: Tensor, z: Tensor) -> Tensor:
        log_q = torch.log_softmax(self._logits(stats), dim=-1)  # (B, M, K)
        z = z.reshape(*z.shape[:-1], self.n_latents, self.n_classes)
        return (z * log_q).sum((-2, -1))

    def prior_log_prob(self, z: Tensor) -> Tensor:
        return torch.full(
            z.shape[:-1], -self.n_latents * math.log(self.n_classes), dtype=z.dtype, device=z.device
        )

    def prior_sample(self, n: int, *, generator: torch.Generator | None) -> Tensor:
        p = next(self.decoder.parameters(), None)
        device = p.device if p is not None else None
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        idx = torch.randint(self.n_classes, (n, self.n_latents), generator=generator, device=device)
        return F.one_hot(idx, self.n_classes).to(dtype).flatten(-2)  # (n, M * K)

    def kl(self, stats: Tensor) -> Tensor:
        return categorical_kl_uniform(self._logits(stats))

    def _reconstruction(self, stats: Tensor, x_flat: Tensor) -> Tensor:
        """Differentiable estimate of E_q[log p(x | z)] by the chosen estimator, (B,)."""
        logits = self._logits(stats)  # (B, M, K)
        s = self.n_samples
        if self.estimator != "reinforce":
            z = gumbel_softmax(
                logits.expand(s, *logits.shape), self.tau, hard=self.estimator == "straight_through"
            )  # (S, B, M, K)
            return self.log_likelihood(z.flatten(-2), x_flat).mean(0)
        z = self.posterior_sample(stats, s, generator=None)  # (S, B, M * K), no gradient
        f = self.log_likelihood(z, x_flat)  # (S, B): gradient reaches the decoder only
        log_q = self.posterior_log_prob(stats, z)  # (S, B): gradient reaches the encoder
        b: Tensor | float = 0.0
        if self.baseline == "leave_one_out":
            b = leave_one_out_baseline(f)
        elif self.baseline == "moving_average":
            b = self.baseline_value.to(f.dtype)
            self._update_baseline(f)
        return reinforce_surrogate(f, log_q, b).mean(0)

    @torch.no_grad()
    def _update_baseline(self, f: Tensor) -> None:
        if not self.training:
            return
        mean_f = f.mean().to(self.baseline_value.dtype)
        if int(self.baseline_count) == 0:
            self.baseline_value.copy_(mean_f)
        else:
            self.baseline_value.mul_(self.momentum).add_((1.0 - self.momentum) * mean_f)
        self.baseline_count.add_(1)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Negative ELBO per example, (B,); its gradient is the chosen estimator's."""
        if cond is not None:
            raise ValueError("this VAE is unconditional: cond must be None")
        x_flat = self.flatten(x)
        stats = self.encoder(x_flat)
        return self.kl(stats) - self._reconstruction(stats, x_flat)
