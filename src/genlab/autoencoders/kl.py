"""The KL-regularised convolutional autoencoder of latent diffusion (Rombach et al. 2022,
sec. 3.1 and appendix G, "KL-reg."): images (B, C, H, W) <-> latents (B, z, h, w).

The encoder (`genlab.tokens.nets`: the "conv" or "resnet" network, with 2 z output
channels) gives a diagonal Gaussian posterior q(z | x) = N(mu(x), diag exp(logvar(x)));
training draws z = mu + exp(logvar / 2) eps (the reparameterisation of Kingma & Welling
2014) and decodes it. The loss per example, in units of one pixel, is

    L(x) = ( sum_pixels (x - D(z))^2 + beta * sum_latents KL(q(z_i | x) || N(0, 1)) ) / D,

the sums of Rombach et al.'s loss (their reconstruction is L1 + LPIPS; here the squared
error) with the KL weight `kl_weight` = beta per latent element, small (1e-6 .. 1e-4) so
the latent space keeps nearly all the detail and is only kept from drifting to arbitrary
scales; D is the number of pixels. The log-variance is clamped to [-30, 20] as theirs.

`encode(x)` is the posterior mean mu (deterministic), `decode(z)` the decoder's output.
`sample(n)` decodes z ~ N(0, I), the KL prior: with a small KL weight the latents are far
from it, so these samples are only a baseline; a diffusion model over the latents
(`genlab.diffusion.latent.LatentDiffusion`) is the generative model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.protocol import GenerativeModel
from genlab.tokens.nets import Decoder

__all__ = ["KLAutoencoder", "gaussian_kl"]

LOGVAR_RANGE = (-30.0, 20.0)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element:
    (mean^2 + exp(logvar) - 1 - logvar) / 2, same shape as the inputs."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)


class KLAutoencoder(GenerativeModel):
    """`encoder` (images -> (B, 2 z, h, w): mean and log-variance), `decoder` (latents
    (B, z, h, w) -> images); see the module docstring."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Decoder,
        data_shape: tuple[int, int, int],
        latent_dim: int,
        *,
        kl_weight: float = 1e-6,
    ) -> None:
        super().__init__()
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.encoder, self.decoder = encoder, decoder
        self.data_shape, self.latent_dim = tuple(data_shape), latent_dim
        self.kl_weight = kl_weight
        with torch.no_grad():
            probe = encoder(torch.zeros(1, *self.data_shape))  # (1, 2 z, h, w)
        if probe.shape[1] != 2 * latent_dim:
            raise ValueError(f"the encoder gives {probe.shape[1]} channels; a Gaussian posterior "
                             f"of {latent_dim} channels needs {2 * latent_dim}")  # fmt: skip
        self.latent_shape: tuple[int, int, int] = (latent_dim, *probe.shape[-2:])

    @property
    def dim(self) -> int:
        return math.prod(self.data_shape)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) of q(z | x), each (B, z, h, w); logvar clamped to [-30, 20]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> the posterior mean (B, z, h, w) (deterministic)."""
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """(B, z, h, w) -> (B, C, H, W): the decoder's reconstruction."""
        return self.decoder(z)[0]

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example loss (B,): (squared error + kl_weight x KL) / pixels, with z drawn
        from the posterior (module docstring)."""
        if cond is not None:
            raise ValueError("the autoencoder is unconditional: cond must be None")
        mean, logvar = self.posterior(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        sq = (self.decode(z).float() - x.float()).square().flatten(1).sum(1)  # (B,)
        kl = gaussian_kl(mean.float(), logvar.float()).flatten(1).sum(1)  # (B,)
        return (sq + self.kl_weight * kl) / self.dim

    @torch.no_grad()
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n images (n, C, H, W): z ~ N(0, I) (the KL prior) decoded, clamped to [-1, 1]."""
        if cond is not None:
            raise ValueError("the autoencoder is unconditional: cond must be None")
        device = next(self.parameters()).device
        z = torch.randn((n, *self.latent_shape), generator=generator, device=device)
        return self.decode(z).clamp(-1.0, 1.0)
