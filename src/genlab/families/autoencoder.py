"""The KL-regularised autoencoder as a family: the first stage of latent diffusion.

    [model]
    family = "kl-autoencoder"

    [kl-autoencoder]
    architecture = "conv"      # or "resnet" (genlab.tokens.nets, shared with the tokenizers)
    channels = 32
    downsample = 1             # 8x8 digits -> 4x4 latents
    latent_dim = 4             # channels of the latents
    kl_weight = 1e-6           # beta per latent element (Rombach et al. 2022)

The model is `genlab.autoencoders.kl.KLAutoencoder`. It has no likelihood of its own
(`genlab eval --likelihood` refuses it); `genlab eval` reports its own numbers through the
`metrics` hook: the test reconstruction MSE (posterior mean decoded), the KL per latent
element, the standard deviation of the training split's latents and the scale factor
1 / std a latent diffusion run over this autoencoder uses, and, on 8x8 digits, the
Frechet distance of the test reconstructions next to its floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.errors import ConfigError
from genlab.families.base import IMAGE, Family, Shape
from genlab.families.tokenizer import check_autoencoder

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.protocol import GenerativeModel

__all__ = ["FAMILY", "KLAutoencoderOptions"]

NAME = "kl-autoencoder"


class KLAutoencoderOptions(BaseModel):
    """`[kl-autoencoder]`: the encoder / decoder pair of `genlab.tokens.nets` (`architecture`
    "conv" or "resnet"; `channel_mult` of length downsample + 1, `num_res_blocks`,
    `attention` are resnet keys), `latent_dim` latent channels at 1 / 2^downsample of the
    image side, and the KL weight per latent element."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["conv", "resnet"] = "conv"
    channels: int = Field(32, ge=1)
    downsample: int = Field(1, ge=0)
    channel_mult: tuple[int, ...] | None = None
    num_res_blocks: int | None = Field(None, ge=1)
    attention: bool | None = None
    dropout: float = Field(0.0, ge=0, lt=1)
    latent_dim: int = Field(4, ge=1)
    kl_weight: float = Field(1e-6, ge=0)


def _options(cfg: RunConfig) -> KLAutoencoderOptions:
    return cfg.options  # type: ignore[return-value]


def check(cfg: RunConfig) -> None:
    """Rules between the autoencoder's keys and the data."""
    pixels = "the autoencoder reconstructs the pixels themselves"
    check_autoencoder(cfg, NAME, _options(cfg), pixels)


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    """The KLAutoencoder of the config for images of `shape` (C, H, W)."""
    from genlab.autoencoders.kl import KLAutoencoder
    from genlab.tokens.nets import conv_pair, resnet_pair

    o = _options(cfg)
    if len(shape) != 3 or any(s % 2**o.downsample for s in shape[1:]):
        raise ConfigError(f"{NAME}.downsample: {o.downsample} halvings do not divide images "
                          f"of shape {'x'.join(map(str, shape))}")  # fmt: skip
    z, out = o.latent_dim, 2 * o.latent_dim  # the posterior's mean and log-variance
    if o.architecture == "conv":
        encoder, decoder = conv_pair(shape[0], z, o.channels, o.downsample, encoder_dim=out)
    else:
        mult = o.channel_mult or (1, *([2] * o.downsample))
        encoder, decoder = resnet_pair(shape[0], z, o.channels, mult, o.num_res_blocks or 1,
                                       o.attention is not False, dropout=o.dropout,
                                       encoder_dim=out)  # fmt: skip
    return KLAutoencoder(encoder, decoder, shape, z, kl_weight=o.kl_weight)  # type: ignore[arg-type]


def describe(cfg: RunConfig) -> str:
    o = _options(cfg)
    return (f"KL autoencoder, {o.architecture} {o.channels}, /{2**o.downsample}, "
            f"{o.latent_dim} latent channels, KL weight {o.kl_weight:g}")  # fmt: skip


def metrics(run: Any, data: Any) -> dict[str, float]:
    """Test reconstruction MSE and KL per latent element, the training latents' std and
    scale factor, and the reconstructions' Frechet distance (8x8 digits)."""
    import torch

    from genlab.autoencoders.kl import gaussian_kl
    from genlab.diffusion.latent import latent_scale
    from genlab.runs import evaluate_images

    model = run.model.eval()
    with torch.no_grad():
        parts = [model.posterior(data.test[i : i + 512]) for i in range(0, len(data.test), 512)]
        mean, logvar = (torch.cat([p[j] for p in parts]) for j in (0, 1))
        recon = model.decode(mean)
    scale = latent_scale(model, data.train)
    values = {"recon_mse": float((recon.double() - data.test.double()).square().mean()),
              "kl_per_latent": float(gaussian_kl(mean.double(), logvar.double()).mean()),
              "latent_std": 1.0 / scale, "scale_factor": scale,
              "latent_elements": float(mean[0].numel())}  # fmt: skip
    if tuple(data.shape) == (1, 8, 8):
        fd = evaluate_images(recon, data, seed=run.config.sample.seed)
        values.update(recon_fd=fd["fd"], recon_fd_floor=fd["fd_floor"],
                      recon_fd_ratio=fd["fd_ratio"])  # fmt: skip
    return values


FAMILY = Family(
    name=NAME,
    description="KL-regularised convolutional autoencoder (Gaussian posterior, small KL "
    "weight): the latent space of latent diffusion",
    options=KLAutoencoderOptions,
    build=build,
    describe=describe,
    data=(IMAGE,),
    likelihood=None,
    check=check,
    metrics=metrics,
)
