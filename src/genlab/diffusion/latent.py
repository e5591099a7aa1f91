"""Latent diffusion (Rombach et al. 2022, *High-Resolution Image Synthesis with Latent
Diffusion Models*): a `Diffusion` model over the scaled latents of a frozen autoencoder.

With a trained autoencoder (`encode`: images (B, C, H, W) -> latents (B, z, h, w),
deterministic; `decode` back) and the scale factor f = 1 / std of the training latents
(their sec. 4.3.2 and appendix G: "rescale the latent space to unit variance", one scalar
over all elements), the diffusion model learns the distribution of

    u = f * encode(x)        (B, z, h, w), of unit standard deviation on the training split,

and a sample is decode(u / f). Training encodes each batch on the fly with the posterior
mean (deterministic: the same latent for the same image at every step). Everything of the
diffusion model works unchanged in latent space: the denoiser `diffusion.denoiser`, every
sampler and grid, fitted grids, classifier-free guidance with labels or text; `sample`
forwards its keywords to `Diffusion.sample` and decodes. There is no likelihood of the
pixels (the decoder is deterministic).

`ready` says whether the autoencoder holds trained weights: a model rebuilt from a config
alone gets them from its run's checkpoint and refuses to work until then.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genlab.diffusion.model import Diffusion
from genlab.errors import DataError
from genlab.protocol import GenerativeModel

__all__ = ["LatentDiffusion", "latent_scale"]


@torch.no_grad()
def latent_scale(autoencoder: nn.Module, x: Tensor, batch_size: int = 512) -> float:
    """The scale factor f = 1 / std of the latents encode(x) of the images x (B, C, H, W),
    over all their elements (the unbiased standard deviation, as torch.std)."""
    was = autoencoder.training
    autoencoder.eval()
    z = torch.cat([autoencoder.encode(x[i : i + batch_size]).double().flatten()  # type: ignore[operator]
                   for i in range(0, x.shape[0], batch_size)])  # fmt: skip
    autoencoder.train(was)
    std = float(z.std())
    if not std > 0:
        raise DataError("the autoencoder's latents of the training split have no spread "
                        "(std 0): it cannot be scaled to unit variance")  # fmt: skip
    return 1.0 / std


class LatentDiffusion(GenerativeModel):
    """`diffusion` over f * latents of a frozen `autoencoder` (module docstring).

    `autoencoder` needs `encode(x) -> (B, *latent_shape)` and `decode(z) -> (B, *data_shape)`;
    `diffusion.data_shape` is its latent shape; `scale_factor` is f."""

    def __init__(
        self,
        autoencoder: nn.Module,
        diffusion: Diffusion,
        data_shape: tuple[int, ...],
        scale_factor: float,
        *,
        ready: bool = True,
    ) -> None:
        super().__init__()
        if not scale_factor > 0:
            raise ValueError(f"scale_factor must be > 0, got {scale_factor}")
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        self.diffusion = diffusion
        self.data_shape = tuple(data_shape)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        self.register_buffer("ready", torch.tensor(ready))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.diffusion.data_shape

    @property
    def denoiser(self) -> Any:
        """The latent-space denoiser D(u, sigma, cond) of the diffusion model."""
        return self.diffusion.denoiser

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()  # frozen: always in inference mode
        return self

    def _check_ready(self) -> None:
        if not bool(self.ready):
            raise DataError("the autoencoder of this latent diffusion model holds no trained "
                            "weights: build the model through its run (genlab.runs.load_run "
                            "/ train_run)")  # fmt: skip

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> scaled latents u = f * mean of q(z | x), (B, z, h, w)."""
        self._check_ready()
        return self.autoencoder.encode(x) * self.scale_factor  # type: ignore[operator]

    @torch.no_grad()
    def decode(self, u: Tensor) -> Tensor:
        """Scaled latents (B, z, h, w) -> images (B, C, H, W), clamped to [-1, 1]."""
        self._check_ready()
        x = self.autoencoder.decode(u / self.scale_factor)  # type: ignore[operator]
        return x.clamp(-1.0, 1.0)

    def loss(self, x: Tensor, cond: Any = None) -> Tensor:
        """The diffusion model's per-example loss (B,) on the scaled latents of x."""
        return self.diffusion.loss(self.encode(x), cond)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Any = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """n images (n, C, H, W): `Diffusion.sample` in latent space (`options`: sampler,
        nfe, schedule, guidance, uncond, options, callback), decoded."""
        self._check_ready()
        return self.decode(self.diffusion.sample(n, cond, generator=generator, **options))
