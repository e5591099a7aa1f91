"""Variational autoencoders with a diagonal-Gaussian latent (Kingma & Welling 2014).

`LatentVAE` holds what every VAE shares: the ELBO with analytic KL, the importance-weighted
bound of Burda et al. (2016) batched over the k samples with memory-aware chunking, and ancestral
sampling. A subclass says what the posterior and the prior are (`VAE`: Gaussian;
`genlab.autoencoders.categorical.CategoricalVAE`: M categorical variables).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor, nn

from genlab.autoencoders.decoders import Likelihood
from genlab.density import LOG_2PI, standard_normal_log_prob
from genlab.protocol import GenerativeModel


def mlp(in_dim: int, out_dim: int, *, hidden: int = 256, depth: int = 2) -> nn.Sequential:
    """The default encoder/decoder net: `depth` hidden layers of width `hidden` with SiLU."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def mlp_pair(
    data_shape: tuple[int, ...],
    stats_dim: int,
    latent_dim: int,
    likelihood: Likelihood,
    *,
    hidden: int = 256,
    depth: int = 2,
) -> tuple[nn.Sequential, nn.Sequential]:
    """The default networks of a VAE: an `mlp` encoder from the flat data (D) to `stats_dim`
    posterior statistics and an `mlp` decoder from `latent_dim` latents to the
    likelihood's n_params * D parameters."""
    d = math.prod(data_shape)
    encoder = mlp(d, stats_dim, hidden=hidden, depth=depth)
    decoder = mlp(latent_dim, likelihood.n_params * d, hidden=hidden, depth=depth)
    return encoder, decoder


def _no_cond(cond: Tensor | None) -> None:
    if cond is not None:
        raise ValueError("this VAE is unconditional: cond must be None")


class LatentVAE(GenerativeModel):
    """Shared machinery of a VAE: encoder q(z | x), prior p(z), decoder p(x | z).

    x is (B, *data_shape); the encoder sees x flattened to (B, D) and the decoder maps latents
    (N, latent_dim) to (N, likelihood.n_params * D).
    """

    loss_is_nll = True  # the negative ELBO, an upper bound of -log p(x)

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        data_shape: tuple[int, ...],
        latent_dim: int,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.data_shape = tuple(data_shape)
        self.data_dim = math.prod(self.data_shape)
        self.latent_dim = latent_dim
        self.discrete = bool(likelihood.discrete)  # a discrete decoder: ln P of the data

    # --- what a subclass defines -------------------------------------------------------------
    @abstractmethod
    def posterior_sample(
        self, stats: Tensor, n: int, *, generator: torch.Generator | None
    ) -> Tensor:
        """n draws z ~ q(z | x) from encoder output stats (B, S): (n, B, latent_dim)."""

    @abstractmethod
    def posterior_log_prob(self, stats: Tensor, z: Tensor) -> Tensor:
        """log q(z | x) for z (..., B, latent_dim) -> (..., B)."""

    @abstractmethod
    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p(z), (..., latent_dim) -> (...)."""

    @abstractmethod
    def prior_sample(self, n: int, *, generator: torch.Generator | None) -> Tensor:
        """n draws z ~ p(z), (n, latent_dim)."""

    @abstractmethod
    def kl(self, stats: Tensor) -> Tensor:
        """KL(q(z | x) || p(z)) in closed form, (B,)."""

    # --- shared ------------------------------------------------------------------------------
    def flatten(self, x: Tensor) -> Tensor:
        """(B, *data_shape) -> (B, D), checking the shape."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected x of shape (B, {self.data_shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.data_dim)

    def encode(self, x: Tensor) -> Tensor:
        """Encoder output (posterior statistics) for x (B, *data_shape)."""
        return self.encoder(self.flatten(x))

    def log_likelihood(self, z: Tensor, x_flat: Tensor) -> Tensor:
        """log p(x | z) for z (..., B, latent_dim) and x (B, D) -> (..., B)."""
        params = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, n_params * D)
        params = params.reshape(*z.shape[:-1], params.shape[-1])
        return self.likelihood.log_prob(params, x_flat)

    def elbo(
        self, x: Tensor, *, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """ELBO E_q[log p(x | z)] - KL(q(z | x) || p(z)) per example, (B,) (Kingma & Welling
        2014, eq. 7: the SGVB estimator B with analytic KL; eq. 10 for the Gaussian case), the
        expectation estimated with `n_samples` posterior draws."""
        x_flat = self.flatten(x)
        stats = self.encoder(x_flat)
        z = self.posterior_sample(stats, n_samples, generator=generator)  # (S, B, L)
        return self.log_likelihood(z, x_flat).mean(0) - self.kl(stats)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Negative ELBO per example, (B,), one posterior sample."""
        _no_cond(cond)
        return -self.elbo(x)

    def log_weights(
        self,
        x: Tensor,
        k: int,
        *,
        max_rows: int = 65_536,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Importance log-weights log p(x, z_i) - log q(z_i | x), z_i ~ q, shape (k, B).

        Decoder calls process at most max(max_rows, B) (sample, example) pairs at a time, so
        memory is bounded by that many rows of n_params * D decoder outputs whatever k is.
        Wrap the call in `torch.no_grad()` when the bound is only evaluated.
        """
        x_flat = self.flatten(x)
        stats = self.encoder(x_flat)
        chunk = max(1, max_rows // x_flat.shape[0])
        out: list[Tensor] = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            z = self.posterior_sample(stats, n, generator=generator)  # (n, B, L)
            log_w = (
                self.log_likelihood(z, x_flat)
                + self.prior_log_prob(z)
                - self.posterior_log_prob(stats, z)
            )  # (n, B)
            out.append(log_w)
        return torch.cat(out, dim=0)

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        k: int = 64,
        max_rows: int = 65_536,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The importance-weighted bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)] in nats,
        (B,) (Burda et al. 2016, eq. 8), with k = 64 importance samples by default.

        A stochastic lower bound on log p(x): L_1 is the ELBO, L_k is non-decreasing in k and
        tends to log p(x) as k -> infinity (Burda et al. 2016, Theorem 1). See `log_weights` for
        `max_rows` (memory-aware chunking over the k samples).
        """
        _no_cond(cond)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        log_w = self.log_weights(x, k, max_rows=max_rows, generator=generator)  # (k, B)
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    def decode(
        self, z: Tensor, *, mean: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """x ~ p(x | z) (or its mean), reshaped to (N, *data_shape)."""
        params = self.decoder(z)  # (N, n_params * D)
        x = (
            self.likelihood.mean(params)
            if mean
            else self.likelihood.sample(params, generator=generator)
        )
        return x.reshape(z.shape[0], *self.data_shape)

    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> Tensor:
        """Ancestral samples z ~ p(z), x ~ p(x | z); with mean=True, E[x | z] instead of a draw
        of the (often noisy) likelihood. Returns (n, *data_shape)."""
        _no_cond(cond)
        z = self.prior_sample(n, generator=generator)
        return self.decode(z, mean=mean, generator=generator)


class VAE(LatentVAE):
    """Gaussian VAE (Kingma & Welling 2014): prior N(0, I), posterior
    q(z | x) = N(mu(x), diag exp(logvar(x))), sampled by reparameterisation
    z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (section 2.4).

    The encoder maps (B, D) to (B, 2 * latent_dim) = [mu, logvar]; logvar is clamped to
    [-30, 20]. Use `VAE.with_mlp` for the default MLP networks.
    """

    @classmethod
    def with_mlp(
        cls,
        data_shape: tuple[int, ...],
        latent_dim: int,
        likelihood: Likelihood,
        *,
        hidden: int = 256,
        depth: int = 2,
    ) -> VAE:
        """A VAE whose encoder and decoder are `mlp(...)` nets of the given width and depth."""
        nets = mlp_pair(data_shape, 2 * latent_dim, latent_dim, likelihood, hidden=hidden,
                        depth=depth)  # fmt: skip
        return cls(*nets, likelihood, data_shape, latent_dim)

    def _split(self, stats: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = stats.chunk(2, dim=-1)  # (B, L) each
        return mu, logvar.clamp(-30.0, 20.0)

    def posterior_sample(
        self, stats: Tensor, n: int, *, generator: torch.Generator | None
    ) -> Tensor:
        mu, logvar = self._split(stats)
        eps = torch.randn((n, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps  # (n, B, L)

    def posterior_log_prob(self, stats: Tensor, z: Tensor) -> Tensor:
        mu, logvar = self._split(stats)
        return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        flat = z.reshape(-1, z.shape[-1])  # (N, L)
        return standard_normal_log_prob(flat).reshape(z.shape[:-1])

    def prior_sample(self, n: int, *, generator: torch.Generator | None) -> Tensor:
        p = next(self.decoder.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        device = p.device if p is not None else None
        return torch.randn((n, self.latent_dim), generator=generator, dtype=dtype, device=device)

    def kl(self, stats: Tensor) -> Tensor:
        """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)
        (Kingma & Welling 2014, appendix B)."""
        mu, logvar = self._split(stats)
        return 0.5 * (mu.square() + torch.exp(logvar) - logvar - 1.0).sum(-1)
