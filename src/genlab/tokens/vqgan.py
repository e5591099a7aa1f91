"""VQGAN: the VQ autoencoder trained with a patch discriminator and a perceptual loss
(Esser et al. 2021, "Taming transformers for high-resolution image synthesis", sec. 3.1).

Objective (eq. 5-7): the generator (encoder, quantizer, decoder) minimises

    L_rec + w_p L_perc + L_VQ + lambda w_d L_G,   L_G = -E[D(x_hat)]   (hinge, generator)

and the discriminator minimises the hinge loss (Lim & Ye 2017; Miyato et al. 2018)

    L_D = E[relu(1 - D(x))] + E[relu(1 + D(x_hat))],

both switched on at training step `disc_start`. The adaptive weight (eq. 7)

    lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_G|| + delta)

is taken at the decoder's output layer G_L (`decoder.last_layer.weight`), clipped to
[0, `max_weight`] and detached. L_rec here includes the perceptual term, as in Esser et
al.'s implementation.

One optimizer, one backward. genlab's trainer is family-agnostic: ONE AdamW optimizer over
`model.parameters()` and one backward of the mean of `model.loss(x) -> (B,)`. Both players
fit that because each term is built to reach only its own player:

- L_G runs the discriminator through `torch.func.functional_call` with DETACHED copies of
  its parameters: the gradient flows through D into x_hat (and so into the generator) but
  never into D's parameters;
- L_D sees the reconstructions DETACHED: its gradient reaches D's parameters only.

So the backward of L_gen + L_D gives the generator exactly grad L_gen and the
discriminator exactly grad L_D: the simultaneous gradient step of the two-player game,
with one Adam state per parameter (the generator's and the discriminator's parameters
are disjoint). The training step counter (`step`, a buffer saved with the weights) decides
the start of the adversarial terms, so a resumed run continues exactly. In evaluation mode
`loss` is the generator's reconstruction objective only (what validation compares).

The perceptual loss compares activations of genlab's shipped digits feature network
(`genlab.eval.features`; no download): LPIPS's distance (Zhang et al. 2018, eq. 1) with
unit weights, i.e. activations unit-normalised over channels, squared differences averaged
over positions and summed over channels and layers. It needs 1x8x8 images.

The discriminator (`patch_discriminator`) is a PatchGAN (Isola et al. 2017, sec. 3.2.2):
a fully convolutional net giving one real/fake logit per patch; its depth is chosen with
`genlab.nets.receptive_field` so that each logit sees a sensible part of the image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from genlab.eval.features import load_digits_features
from genlab.nets.layers import norm_groups
from genlab.nets.receptive_field import receptive_fields
from genlab.tokens.autoencoder import VQAutoencoder, _unconditional

__all__ = [
    "VQGAN",
    "PatchDiscriminator",
    "adaptive_weight",
    "hinge_d_loss",
    "hinge_g_loss",
    "patch_discriminator",
    "perceptual_distance",
]


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss per example, averaged over patches: logits (B, 1, h, w) ->
    relu(1 - D(x)) + relu(1 + D(x_hat)), (B,) (Lim & Ye 2017; Miyato et al. 2018, eq. 16)."""
    real = F.relu(1.0 - real_logits).flatten(1).mean(1)
    fake = F.relu(1.0 + fake_logits).flatten(1).mean(1)
    return real + fake


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator loss of the hinge GAN, -D(x_hat) averaged over patches, (B,)."""
    return -fake_logits.flatten(1).mean(1)


def adaptive_weight(
    rec_loss: Tensor, gan_loss: Tensor, layer: Tensor, delta: float = 1e-6, max_weight: float = 1e4
) -> Tensor:
    """lambda = ||d rec_loss / d layer|| / (||d gan_loss / d layer|| + delta), clipped to
    [0, max_weight], detached (Esser et al. 2021, eq. 7). Both losses are scalars depending
    on the parameter `layer`; their graphs are kept for the training backward."""
    g_rec = torch.autograd.grad(rec_loss, layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, max_weight).detach()


class PatchDiscriminator(nn.Module):
    """Conv 3x3 + LeakyReLU(0.2), then `layers` blocks of Conv 3x3 (stride 2 while the map
    is larger than 4x4, else 1) + GroupNorm + LeakyReLU, widths doubling up to 8x, then a
    1x1 convolution to one logit per patch. x (B, C, H, W) -> logits (B, 1, h, w)."""

    def __init__(self, shape: tuple[int, int, int], channels: int = 32, layers: int = 1) -> None:
        super().__init__()
        c_in, side = shape[0], min(shape[1:])
        blocks: list[nn.Module] = [nn.Conv2d(c_in, channels, 3, padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(layers):
            out = channels * min(2 ** (i + 1), 8)
            stride = 2 if side > 4 else 1
            side = (side + 1) // stride if stride == 2 else side
            blocks += [nn.Conv2d(c, out, 3, stride=stride, padding=1),
                       nn.GroupNorm(norm_groups(out), out), nn.LeakyReLU(0.2)]  # fmt: skip
            c = out
        blocks.append(nn.Conv2d(c, 1, 1))
        self.net = nn.Sequential(*blocks)
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, 1, h, w)


def patch_discriminator(
    shape: tuple[int, int, int],
    channels: int = 32,
    layers: int | None = None,
    patch_fraction: float = 0.75,
) -> PatchDiscriminator:
    """A PatchGAN for images of `shape`. `layers` None: the deepest net whose patch (the
    receptive field of one logit, `genlab.nets.receptive_field`) spans at most
    `patch_fraction` of the image side (8x8: 1 block, 5x5 patches; 32x32: 3 blocks, 17x17
    patches), at least 0 blocks."""
    if layers is not None:
        return PatchDiscriminator(shape, channels, layers)
    limit, chosen = patch_fraction * min(shape[1:]), 0
    for depth in range(1, 9):
        size = receptive_fields(PatchDiscriminator(shape, 1, depth), shape)[-1].size
        if max(size) > limit:
            break
        chosen = depth
    return PatchDiscriminator(shape, channels, chosen)


def perceptual_distance(x: Tensor, y: Tensor) -> Tensor:
    """LPIPS-style distance with unit weights in the digits feature network (Zhang et al.
    2018, eq. 1): for each of its three activations, unit-normalise over channels, square
    the difference, average over positions, sum over channels; summed over layers. Images
    (B, 1, 8, 8) -> (B,). Gradients flow to both inputs; the network stays frozen."""
    net = load_digits_features(x.device)
    total = x.new_zeros(x.shape[0], dtype=torch.float32)
    for a, b in zip(net.activations(x.float()), net.activations(y.float()), strict=True):
        a = a if a.dim() == 4 else a[:, :, None, None]  # (B, C, h, w)
        b = b if b.dim() == 4 else b[:, :, None, None]
        diff = F.normalize(a, dim=1, eps=1e-10) - F.normalize(b, dim=1, eps=1e-10)
        total = total + diff.square().sum(1).flatten(1).mean(1)
    return total


class VQGAN(VQAutoencoder):
    """`VQAutoencoder` + PatchGAN discriminator + perceptual loss (see the module
    docstring). `disc_weight` is w_d, `perceptual_weight` w_p, `adaptive` switches the
    adaptive weight lambda on (else lambda = 1)."""

    def __init__(
        self,
        *args: Any,
        discriminator: nn.Module,
        disc_start: int = 0,
        disc_weight: float = 0.1,
        adaptive: bool = True,
        delta: float = 1e-6,
        max_weight: float = 1e4,
        perceptual_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if perceptual_weight > 0 and self.data_shape != (1, 8, 8):
            shape = "x".join(map(str, self.data_shape))
            raise ValueError("the perceptual loss uses the digits feature network: it needs "
                             f"1x8x8 images (got {shape})")  # fmt: skip
        self.discriminator = discriminator
        self.disc_start, self.disc_weight, self.adaptive = disc_start, disc_weight, adaptive
        self.delta, self.max_weight = delta, max_weight
        self.perceptual_weight = perceptual_weight

    def generator_reconstruction(self, x: Tensor, x_hat: Tensor, rec: Tensor) -> Tensor:
        """The reconstruction term with the perceptual loss added, (B,)."""
        if self.perceptual_weight == 0:
            return rec
        return rec + self.perceptual_weight * perceptual_distance(x, x_hat)

    def adversarial_loss(self, x: Tensor, x_hat: Tensor, rec: Tensor) -> Tensor:
        """lambda w_d L_G (through D with detached parameters) + L_D (on detached x_hat), (B,)."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        g_loss = hinge_g_loss(functional_call(self.discriminator, frozen, (x_hat,)))  # (B,)
        weight: Tensor | float = self.disc_weight
        if self.adaptive and torch.is_grad_enabled():
            layer = self.decoder.last_layer.weight
            lam = adaptive_weight(rec.mean(), g_loss.mean(), layer, self.delta, self.max_weight)
            weight = self.disc_weight * lam
        d_loss = hinge_d_loss(self.discriminator(x), self.discriminator(x_hat.detach()))
        return weight * g_loss.float() + d_loss.float()

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per example (B,): reconstruction (+ perceptual) + quantizer loss, and from step
        `disc_start` on (training mode only) the adversarial terms of both players."""
        _unconditional(cond)
        p = self.parts(x)
        rec = self.generator_reconstruction(x, p.mean, self.reconstruction_loss(x, p))
        total = rec + p.quantized.loss
        if self.training and int(self.step) >= self.disc_start:
            total = total + self.adversarial_loss(x, p.mean, rec)
        self.advance(p.quantized.codes)
        return total
