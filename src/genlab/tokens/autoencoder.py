"""The tokenizer model: encoder, quantizer, decoder and a discrete likelihood of the pixels.

`VQAutoencoder` is a VQ-VAE (van den Oord et al. 2017) with any quantizer of
`genlab.tokens` (vector quantizer, FSQ, Gumbel-softmax); `genlab.tokens.vqgan.VQGAN` adds
the adversarial and perceptual terms. The model satisfies both the family protocol
(`genlab.protocol.GenerativeModel`: loss, sample) and the tokenizer interface
(`genlab.tokens.protocol.Tokenizer`: codebook_size, grid, encode, decode, decoder_log_prob).

The decoder likelihood. The decoder's output is the location mu of a discretised logistic
over the data's pixel levels (Salimans et al. 2017, eq. 2;
`genlab.autoencoders.DiscretizedLogisticLikelihood`), a normalised probability of the
discrete pixels, so that with the deterministic encoder z(x)

    ln P(x) >= ln p(x | z(x)) + ln p_prior(z(x))

(the one-point variational bound with q(z | x) = 1[z = z(x)], whose entropy is 0) bounds
the pixels' log-probability for any prior over the codes. Its log-scale is `log_scale`:
"global" (one learned scalar), "pixel" (one per pixel position) or "predicted" (a small
convolutional head on the decoder's features, so that background pixels can be near
certain). With `reconstruction = "mse"` the mean is trained by the pixel MSE and the
scale by the likelihood on the detached mean and features (an extra term whose gradient
reaches only the scale's parameters: fitted jointly, without touching the reconstruction);
with "nll" the whole autoencoder is trained by the per-pixel negative log-likelihood.

Buffers saved with the weights: `step`, the number of training calls of `loss` (annealing,
the discriminator's start), and `code_usage`, an exponential moving average (decay
`usage_decay`) of the training batches' code histograms. `sample(n)` decodes i.i.d. codes
drawn from that histogram: the tokenizer's own (unigram) prior, a baseline any learned
prior over the codes should beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from genlab.autoencoders.decoders import DiscretizedLogisticLikelihood
from genlab.protocol import GenerativeModel
from genlab.tokens.nets import Decoder
from genlab.tokens.quantizers import Quantized, Quantizer

__all__ = ["LogScale", "Parts", "VQAutoencoder"]

ScaleMode = Literal["global", "pixel", "predicted"]
Reconstruction = Literal["mse", "nll"]
INIT_LOG_SCALE = math.log(0.1)  # the logistic scale s at initialisation, in [-1, 1] units


class LogScale(nn.Module):
    """The log-scale of the discretised logistic: "global" (a scalar), "pixel" (C, H, W) or
    "predicted" from the decoder's features (B, F, H, W) by Conv 3x3, SiLU, Conv 1x1
    (zero-initialised, so it starts at the global value). -> (B, C, H, W)."""

    def __init__(self, mode: ScaleMode, data_shape: tuple[int, ...], feature_channels: int) -> None:
        super().__init__()
        if mode not in ("global", "pixel", "predicted"):
            raise ValueError(f"log_scale must be 'global', 'pixel' or 'predicted', got {mode!r}")
        self.mode, self.data_shape = mode, data_shape
        shape = () if mode == "global" else data_shape
        self.value = nn.Parameter(torch.full(shape, INIT_LOG_SCALE))
        self.head: nn.Module | None = None
        if mode == "predicted":
            f, c = feature_channels, data_shape[0]
            last = nn.Conv2d(f, c, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.head = nn.Sequential(nn.Conv2d(f, f, 3, padding=1), nn.SiLU(), last)

    def forward(self, features: Tensor) -> Tensor:
        b = features.shape[0]
        if self.head is None:
            return self.value.expand(b, *self.data_shape)  # (B, C, H, W)
        return self.value + self.head(features)  # (B, C, H, W)


@dataclass
class Parts:
    """One pass through the autoencoder: latents, quantizer output, reconstruction (the
    logistic location) and the decoder features."""

    z_e: Tensor  # (B, D, h, w)
    quantized: Quantized
    mean: Tensor  # (B, C, H, W)
    features: Tensor  # (B, F, H, W)


class VQAutoencoder(GenerativeModel):
    """Images (B, C, H, W) in [-1, 1] on `levels` pixel levels <-> codes (B, h, w); see the
    module docstring. `loss(x)` per example: reconstruction (pixel MSE, or NLL per pixel)
    + the quantizer's auxiliary loss + `scale_weight` x the likelihood term of the scale."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Decoder,
        quantizer: Quantizer,
        data_shape: tuple[int, int, int],
        levels: int,
        *,
        log_scale: ScaleMode = "predicted",
        reconstruction: Reconstruction = "mse",
        scale_weight: float = 1.0,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        if reconstruction not in ("mse", "nll"):
            raise ValueError(f"reconstruction must be 'mse' or 'nll', got {reconstruction!r}")
        self.encoder, self.decoder, self.quantizer = encoder, decoder, quantizer
        self.data_shape = tuple(data_shape)
        self.likelihood = DiscretizedLogisticLikelihood(levels, low=-1.0, high=1.0)
        self.log_scale = LogScale(log_scale, self.data_shape, decoder.feature_channels)
        self.reconstruction, self.scale_weight = reconstruction, scale_weight
        self.usage_decay = usage_decay
        self.codebook_size = quantizer.codebook_size
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("code_usage", torch.zeros(quantizer.codebook_size))
        with torch.no_grad():
            probe = encoder(torch.zeros(1, *self.data_shape))  # (1, D, h, w)
        if probe.shape[1] != quantizer.dim:
            raise ValueError(f"the encoder gives {probe.shape[1]} channels, the quantizer "
                             f"takes {quantizer.dim}")  # fmt: skip
        self.grid: tuple[int, int] = (int(probe.shape[-2]), int(probe.shape[-1]))

    @property
    def dim(self) -> int:
        return math.prod(self.data_shape)

    # ------------------------------------------------------------------ tokenizer interface

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, h, w) int64 codes (deterministic)."""
        return self.quantizer.codes(self.encoder(x))

    def decode(self, codes: Tensor) -> Tensor:
        """(B, h, w) codes -> (B, C, H, W): the decoder's mean (the logistic location)."""
        return self.decoder(self.quantizer.embed(codes))[0]

    def decoder_log_prob(self, x: Tensor, codes: Tensor) -> Tensor:
        """ln p(x | codes) of the discrete pixels x (B, C, H, W), in nats per example, (B,)."""
        mean, features = self.decoder(self.quantizer.embed(codes))
        return self.pixel_log_prob(x, mean, self.log_scale(features))

    def pixel_log_prob(self, x: Tensor, mean: Tensor, log_s: Tensor) -> Tensor:
        """Discretised-logistic ln P(x | mu = mean, ln s = log_s), summed per example, (B,);
        computed in float32."""
        params = torch.cat([mean.flatten(1), log_s.flatten(1)], dim=1).float()  # (B, 2 D)
        return self.likelihood.log_prob(params, x.flatten(1).float())

    # ------------------------------------------------------------------ training

    def parts(self, x: Tensor) -> Parts:
        """Encode, quantize (with the training-time bookkeeping in training mode), decode."""
        z_e = self.encoder(x)  # (B, D, h, w)
        quantized = self.quantizer(z_e, int(self.step))
        mean, features = self.decoder(quantized.z_q.to(z_e.dtype))
        return Parts(z_e, quantized, mean, features)

    def reconstruction_loss(self, x: Tensor, p: Parts) -> Tensor:
        """The reconstruction term per example (B,): the pixel MSE, or the negative
        log-likelihood per pixel in nats ("nll"); with "mse", plus `scale_weight` x the NLL
        per pixel of the detached mean (it trains only the scale)."""
        if self.reconstruction == "nll":
            return -self.pixel_log_prob(x, p.mean, self.log_scale(p.features)) / self.dim
        mse = (p.mean.float() - x.float()).square().flatten(1).mean(1)  # (B,)
        if self.scale_weight == 0:
            return mse
        log_s = self.log_scale(p.features.detach())
        return mse - self.scale_weight * self.pixel_log_prob(x, p.mean.detach(), log_s) / self.dim

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example loss (B,): reconstruction + the quantizer's auxiliary loss."""
        _unconditional(cond)
        p = self.parts(x)
        total = self.reconstruction_loss(x, p) + p.quantized.loss
        self.advance(p.quantized.codes)
        return total

    @torch.no_grad()
    def advance(self, codes: Tensor) -> None:
        """In training mode: count the step and fold the batch's codes into `code_usage`."""
        if not self.training:
            return
        hist = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()  # (K,)
        self.code_usage.lerp_(hist / hist.sum(), 1.0 - self.usage_decay)
        self.step.add_(1)

    # ------------------------------------------------------------------ sampling

    def code_distribution(self) -> Tensor:
        """The unigram distribution of `sample` (K,): the normalised `code_usage`, uniform
        before any training step."""
        usage = self.code_usage.double()
        if float(usage.sum()) <= 0:
            return torch.full_like(usage, 1.0 / self.codebook_size)
        return usage / usage.sum()

    @torch.no_grad()
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n images (n, C, H, W): i.i.d. codes from the training code-usage histogram,
        decoded (the decoder's mean, clamped to [-1, 1])."""
        _unconditional(cond)
        h, w = self.grid
        probs = self.code_distribution()
        codes = torch.multinomial(probs, n * h * w, replacement=True, generator=generator)
        codes = codes.view(n, h, w).to(self.code_usage.device)  # (n, h, w)
        return self.decode(codes).clamp(-1.0, 1.0)


def _unconditional(cond: Tensor | None) -> None:
    if cond is not None:
        raise ValueError("the tokenizer is unconditional: cond must be None")


class PreQuantized(nn.Module):
    """A trained `VQAutoencoder` seen as a continuous autoencoder through its
    pre-quantisation latents (the VQ-regularised first stage of Rombach et al. 2022,
    sec. 3.1): `encode` gives the encoder's output z_e (B, D, h, w), `decode` quantizes a
    latent to its nearest code and decodes it, so a latent model's samples are decoded
    through the codebook as the tokenizer was trained. Holds the tokenizer as `tokenizer`."""

    def __init__(self, tokenizer: VQAutoencoder) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.latent_shape: tuple[int, int, int] = (tokenizer.quantizer.dim, *tokenizer.grid)

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> pre-quantisation latents (B, D, h, w)."""
        return self.tokenizer.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """(B, D, h, w) -> (B, C, H, W): the decoder's mean at the nearest codes of z."""
        return self.tokenizer.decode(self.tokenizer.quantizer.codes(z))
