"""Tokenizers as families: VQ-VAE, FSQ, the Gumbel-softmax quantizer and VQGAN.

All four share the `[tokenizer]` section: the autoencoder (architecture, widths, number of
halvings, the decoder's likelihood) and one sub-table per quantizer, `[tokenizer.vq]`,
`[tokenizer.fsq]` or `[tokenizer.gumbel]`, plus `[tokenizer.gan]` for VQGAN. The family
fixes the quantizer (vqvae: "vq", fsq: "fsq", gumbel-vq: "gumbel"); vqgan takes any
(`tokenizer.quantizer`, default "vq").

A tokenizer has no likelihood of its own (`genlab eval --likelihood` refuses it): its
decoder likelihood ln p(x | codes) is the first half of the two-stage bound a prior over
its codes reports. `genlab eval` reports the tokenizer's own numbers through the `metrics`
hook (`genlab.tokens.metrics`): test reconstruction MSE, codebook usage and perplexity over
the whole test split, dead codes, the decoder's bits/dim, the bound with the unigram code
prior, and the Frechet distance of the reconstructions next to its floor. `genlab encode`
writes a run's codes for a prior to train on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.errors import ConfigError
from genlab.families.base import IMAGE, Family, Shape

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.protocol import GenerativeModel
    from genlab.tokens.quantizers import Quantizer

QuantizerName = Literal["vq", "fsq", "gumbel"]
QUANTIZER_OF = {"vqvae": "vq", "fsq": "fsq", "gumbel-vq": "gumbel", "vqgan": "vq"}
SECTION = "tokenizer"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VQOptions(_Options):
    """`[tokenizer.vq]`: the vector quantizer (`genlab.tokens.vq.VectorQuantizer`)."""

    codebook_size: int = Field(128, ge=2)
    codebook_dim: int | None = Field(None, ge=1)  # low-dimensional lookup space
    cosine: bool = False  # l2-normalised lookup
    beta: float = Field(0.25, ge=0)  # commitment weight, on the encoder term
    ema_decay: float = Field(0.99, ge=0, lt=1)  # 0: codebook learned by gradient
    eps: float = Field(1e-5, gt=0)  # Laplace smoothing of the EMA cluster sizes
    kmeans_iters: int = Field(10, ge=0)  # k-means init on the first batch; 0 = off
    dead_after: int = Field(20, ge=0)  # restart codes idle this many steps; 0 = never
    gradient: Literal["straight_through", "rotation"] = "straight_through"


class FSQOptions(_Options):
    """`[tokenizer.fsq]`: finite scalar quantization levels, K = their product."""

    levels: tuple[int, ...] = (8, 5, 5, 5)


class GumbelOptions(_Options):
    """`[tokenizer.gumbel]`: Gumbel-softmax codes; tau = max(tau_min, tau0 exp(-rate step))."""

    codebook_size: int = Field(128, ge=2)
    tau0: float = Field(1.0, gt=0)
    tau_min: float = Field(0.5, gt=0)
    rate: float = Field(1e-4, ge=0)
    hard: bool = False  # straight-through one-hot samples
    kl_weight: float = Field(5e-4, ge=0)


class GANOptions(_Options):
    """`[tokenizer.gan]` (vqgan): discriminator start step, weight w_d, the adaptive weight,
    the PatchGAN's width, depth (None: chosen from its receptive field, at most
    `patch_fraction` of the image side) and the perceptual weight (None: 1 on 1x8x8 images,
    where the digits feature network applies, else 0)."""

    disc_start: int = Field(500, ge=0)
    disc_weight: float = Field(0.1, ge=0)
    adaptive: bool = True
    delta: float = Field(1e-6, gt=0)
    max_weight: float = Field(1e4, gt=0)
    disc_channels: int = Field(32, ge=1)
    disc_layers: int | None = Field(None, ge=0)
    patch_fraction: float = Field(0.75, gt=0, le=1)
    perceptual_weight: float | None = Field(None, ge=0)


class TokenizerOptions(_Options):
    """`[tokenizer]`: the autoencoder (`genlab.tokens.nets`, `genlab.tokens.autoencoder`).
    `architecture` "conv" (the vector-quantizer protocol's plain network) or "resnet"
    (VQGAN's; `channel_mult` of length downsample + 1, `num_res_blocks`, `attention` in
    the middle block are its keys). `latent_dim` (None: 32; FSQ: the number of levels) is
    the encoder's output width. `log_scale` of the discretised-logistic decoder: "global",
    "pixel" or "predicted"; `reconstruction` "mse" (+ `scale_weight` x the scale's NLL) or
    "nll"; `usage_decay` of the code-usage histogram `sample` draws from."""

    architecture: Literal["conv", "resnet"] = "resnet"
    channels: int = Field(64, ge=1)
    downsample: int = Field(1, ge=0)
    channel_mult: tuple[int, ...] | None = None
    num_res_blocks: int | None = Field(None, ge=1)
    attention: bool | None = None
    dropout: float = Field(0.0, ge=0, lt=1)
    latent_dim: int | None = Field(None, ge=1)
    quantizer: QuantizerName | None = None
    log_scale: Literal["global", "pixel", "predicted"] = "predicted"
    reconstruction: Literal["mse", "nll"] = "mse"
    scale_weight: float = Field(1.0, ge=0)
    usage_decay: float = Field(0.99, ge=0, lt=1)
    vq: VQOptions | None = None
    fsq: FSQOptions | None = None
    gumbel: GumbelOptions | None = None
    gan: GANOptions | None = None


def _options(cfg: RunConfig) -> TokenizerOptions:
    return cfg.options  # type: ignore[return-value]


def quantizer_name(cfg: RunConfig) -> str:
    return _options(cfg).quantizer or QUANTIZER_OF[cfg.model.family]


def _sub(cfg: RunConfig, name: str) -> Any:
    """The options of sub-table `name`, defaults filled in."""
    classes = {"vq": VQOptions, "fsq": FSQOptions, "gumbel": GumbelOptions, "gan": GANOptions}
    return getattr(_options(cfg), name) or classes[name]()


def check_autoencoder(cfg: RunConfig, section: str, o: Any, pixels: str) -> None:
    """Rules between an encoder / decoder pair's keys (`o`, options of `section`: the
    architecture, its channel multipliers and halvings) and the data; `pixels` says why
    the pixels must not be dequantised."""
    if o.architecture == "conv":
        for key in ("channel_mult", "num_res_blocks", "attention"):
            if getattr(o, key) is not None:
                raise ConfigError(f"{section}.{key}: only for architecture = 'resnet'")
    elif o.channel_mult is not None and len(o.channel_mult) != o.downsample + 1:
        raise ConfigError(f"{section}.channel_mult: needs downsample + 1 = {o.downsample + 1} "
                          f"entries (got {list(o.channel_mult)})")  # fmt: skip
    if cfg.data.dequantize:
        raise ConfigError(f"data.dequantize: {pixels} (set data.dequantize = false)")
    size = cfg.data.image_size
    if size is not None and size % 2**o.downsample:
        raise ConfigError(f"{section}.downsample: {o.downsample} halvings do not divide "
                          f"images of side {size}")  # fmt: skip


def check(cfg: RunConfig) -> None:
    """Rules between the tokenizer's keys, the family and the data."""
    t, family = _options(cfg), cfg.model.family
    used = quantizer_name(cfg)
    if t.quantizer is not None and family != "vqgan" and t.quantizer != QUANTIZER_OF[family]:
        raise ConfigError(f"{SECTION}.quantizer: model.family = {family!r} quantizes with "
                          f"{QUANTIZER_OF[family]!r} (choose the family instead)")  # fmt: skip
    for name in ("vq", "fsq", "gumbel"):
        if getattr(t, name) is not None and name != used:
            raise ConfigError(f"{SECTION}.{name}: this run's quantizer is {used!r}")
    if t.gan is not None and family != "vqgan":
        raise ConfigError(f"{SECTION}.gan: only for model.family = 'vqgan'")
    check_autoencoder(cfg, SECTION, t, "a tokenizer models the discrete pixels itself")
    if used == "fsq" and min(_sub(cfg, "fsq").levels, default=0) < 2:
        raise ConfigError(f"{SECTION}.fsq.levels: needs at least one level, each >= 2")


def _latent_dim(cfg: RunConfig) -> int:
    t = _options(cfg)
    if t.latent_dim is not None:
        return t.latent_dim
    return len(_sub(cfg, "fsq").levels) if quantizer_name(cfg) == "fsq" else 32


def build_quantizer(cfg: RunConfig) -> Quantizer:
    """The quantizer of the config, taking `_latent_dim(cfg)` channels."""
    from genlab.tokens.quantizers import FSQ, GumbelQuantizer
    from genlab.tokens.vq import VectorQuantizer

    dim, name = _latent_dim(cfg), quantizer_name(cfg)
    if name == "fsq":
        return FSQ(_sub(cfg, "fsq").levels, dim)
    if name == "gumbel":
        g: GumbelOptions = _sub(cfg, "gumbel")
        return GumbelQuantizer(dim, g.codebook_size, tau0=g.tau0, tau_min=g.tau_min,
                               rate=g.rate, hard=g.hard, kl_weight=g.kl_weight)  # fmt: skip
    v: VQOptions = _sub(cfg, "vq")
    return VectorQuantizer(
        dim, v.codebook_size, codebook_dim=v.codebook_dim, cosine=v.cosine, beta=v.beta,
        ema_decay=v.ema_decay, eps=v.eps, kmeans_iters=v.kmeans_iters,
        dead_after=v.dead_after, gradient=v.gradient,
    )  # fmt: skip


def _nets(cfg: RunConfig, shape: Shape) -> tuple[Any, Any]:
    from genlab.tokens.nets import conv_pair, resnet_pair

    t, dim = _options(cfg), _latent_dim(cfg)
    if t.architecture == "conv":
        return conv_pair(shape[0], dim, t.channels, t.downsample)
    mult = t.channel_mult or (1, *([2] * t.downsample))
    return resnet_pair(shape[0], dim, t.channels, mult, t.num_res_blocks or 1,
                       t.attention is not False, dropout=t.dropout)  # fmt: skip


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    """The VQAutoencoder (or VQGAN) of the config for images of `shape`."""
    from genlab.tokens.autoencoder import VQAutoencoder
    from genlab.tokens.vqgan import VQGAN, patch_discriminator

    t = _options(cfg)
    if len(shape) != 3 or any(s % 2**t.downsample for s in shape[1:]):
        raise ConfigError(f"{SECTION}.downsample: {t.downsample} halvings do not divide "
                          f"images of shape {'x'.join(map(str, shape))}")  # fmt: skip
    levels = cfg.data_levels()
    assert levels is not None  # image data
    args = (*_nets(cfg, shape), build_quantizer(cfg), shape, levels)
    kwargs = {"log_scale": t.log_scale, "reconstruction": t.reconstruction,
              "scale_weight": t.scale_weight, "usage_decay": t.usage_decay}  # fmt: skip
    if cfg.model.family != "vqgan":
        return VQAutoencoder(*args, **kwargs)
    g: GANOptions = _sub(cfg, "gan")
    digits_like = tuple(shape) == (1, 8, 8)
    perceptual = g.perceptual_weight if g.perceptual_weight is not None else float(digits_like)
    if perceptual > 0 and not digits_like:
        raise ConfigError(f"{SECTION}.gan.perceptual_weight: the perceptual loss uses the digits "
                          "feature network and needs 1x8x8 images (set it to 0)")  # fmt: skip
    disc = patch_discriminator(shape, g.disc_channels, g.disc_layers, g.patch_fraction)
    return VQGAN(*args, discriminator=disc, disc_start=g.disc_start, disc_weight=g.disc_weight,
                 adaptive=g.adaptive, delta=g.delta, max_weight=g.max_weight,
                 perceptual_weight=perceptual, **kwargs)  # fmt: skip


def describe(cfg: RunConfig) -> str:
    t, name = _options(cfg), quantizer_name(cfg)
    if name == "fsq":
        levels = _sub(cfg, "fsq").levels
        quant = f"FSQ {'x'.join(map(str, levels))}"
    else:
        sub = _sub(cfg, name)
        quant = f"{'VQ' if name == 'vq' else 'Gumbel'} K={sub.codebook_size}"
        if name == "vq" and (sub.codebook_dim or sub.cosine):
            cosine = ", cosine" if sub.cosine else ""
            quant += f" (dim {sub.codebook_dim or _latent_dim(cfg)}{cosine})"
    gan = ", PatchGAN" if cfg.model.family == "vqgan" else ""
    return f"{quant}, {t.architecture} {t.channels}, /{2**t.downsample}{gan}"


def metrics(run: Any, data: Any) -> dict[str, float]:
    """`genlab eval`'s tokenizer numbers (`genlab.tokens.metrics.tokenizer_metrics`) and the
    Frechet distance of the test reconstructions to the test split, next to its floor."""
    from genlab.runs import evaluate_images
    from genlab.tokens.metrics import tokenizer_metrics

    values, recon = tokenizer_metrics(run.model, data.test)
    if tuple(data.shape) == (1, 8, 8):
        fd = evaluate_images(recon, data, seed=run.config.sample.seed)
        values.update(recon_fd=fd["fd"], recon_fd_floor=fd["fd_floor"],
                      recon_fd_ratio=fd["fd_ratio"])  # fmt: skip
    return values


_DESCRIPTIONS = {
    "vqvae": "VQ-VAE tokenizer: vector quantizer with EMA codebook, k-means init, dead-code "
             "restart; codes for a prior",
    "fsq": "FSQ tokenizer: finite scalar quantization, no codebook; codes for a prior",
    "gumbel-vq": "Gumbel-softmax tokenizer: relaxed one-hot codes with temperature annealing",
    "vqgan": "VQGAN tokenizer: VQ autoencoder + PatchGAN hinge loss, adaptive weight, "
             "perceptual loss",
}  # fmt: skip

FAMILIES = tuple(
    Family(name=name, description=text, options=TokenizerOptions, section=SECTION, build=build,
           describe=describe, data=(IMAGE,), likelihood=None, check=check, metrics=metrics)
    for name, text in _DESCRIPTIONS.items()
)  # fmt: skip
