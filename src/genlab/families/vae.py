"""Variational autoencoders as families: Gaussian latents (`vae`) and categorical latents
trained with Gumbel-softmax, straight-through or REINFORCE gradients (`categorical-vae`).

Both report two bounds of the test log-likelihood: the ELBO and the importance-weighted
IWAE-k bound. On image data the decoder's "auto" likelihood is the discretised logistic
over the pixel levels, a probability of the discrete pixels: no dequantisation is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.errors import ConfigError
from genlab.families.base import Family, LikelihoodBound, Shape
from genlab.nets.configs import MAX_LAYERS

if TYPE_CHECKING:
    from genlab.autoencoders import Likelihood
    from genlab.config import LikelihoodSection, RunConfig
    from genlab.protocol import GenerativeModel

Decoder = Literal["auto", "discretized_logistic", "gaussian", "bernoulli"]


class VAEOptions(BaseModel):
    """Gaussian VAE with MLP encoder and decoder (`genlab.autoencoders.VAE.with_mlp`).
    `decoder`: "auto" is the discretised logistic over the data's levels for image data on
    their grid (a probability of the discrete pixels) and a Gaussian with predicted variance
    otherwise."""

    model_config = ConfigDict(extra="forbid")

    latent_dim: int = Field(16, ge=1)
    hidden: int = Field(512, ge=1)
    depth: int = Field(2, ge=1, le=MAX_LAYERS)
    decoder: Decoder = "auto"


class CategoricalVAEOptions(BaseModel):
    """VAE with `n_latents` categorical latents of `n_classes` classes and a uniform prior
    (`genlab.autoencoders.CategoricalVAE.with_mlp`). `estimator`: "gumbel" (the relaxed
    one-hot at temperature `tau`), "straight_through" (hard one-hot forward, relaxed
    backward) or "reinforce" with `baseline`; `n_samples` draws per example."""

    model_config = ConfigDict(extra="forbid")

    n_latents: int = Field(16, ge=1)
    n_classes: int = Field(8, ge=2)
    hidden: int = Field(512, ge=1)
    depth: int = Field(2, ge=1, le=MAX_LAYERS)
    decoder: Decoder = "auto"
    estimator: Literal["gumbel", "straight_through", "reinforce"] = "gumbel"
    tau: float = Field(1.0, gt=0)
    baseline: Literal["none", "moving_average", "leave_one_out"] = "moving_average"
    n_samples: int = Field(1, ge=1)


def decoder_name(cfg: RunConfig) -> str:
    """The decoder likelihood of a VAE config, "auto" resolved."""
    decoder: str = cfg.options.decoder  # type: ignore[attr-defined]
    if decoder != "auto":
        return decoder
    on_grid = cfg.data_levels() is not None and not cfg.data.dequantize
    return "discretized_logistic" if on_grid else "gaussian"


def _likelihood(cfg: RunConfig) -> Likelihood:
    from genlab.autoencoders import (
        BernoulliLikelihood,
        DiscretizedLogisticLikelihood,
        GaussianLikelihood,
    )

    decoder = decoder_name(cfg)
    if decoder == "discretized_logistic":
        levels = cfg.data_levels()
        assert levels is not None  # checked by `check`
        return DiscretizedLogisticLikelihood(levels, low=-1.0, high=1.0)
    if decoder == "gaussian":
        return GaussianLikelihood("predicted")
    return BernoulliLikelihood()


def check(cfg: RunConfig) -> None:
    if decoder_name(cfg) == "discretized_logistic" and (
        cfg.data_levels() is None or cfg.data.dequantize
    ):
        raise ConfigError(f"{cfg.family.table}.decoder: 'discretized_logistic' is for image "
                          "data on its grid (data.dequantize = false)")  # fmt: skip


def build_gaussian(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    from genlab.autoencoders import VAE

    v: VAEOptions = cfg.options  # type: ignore[assignment]
    return VAE.with_mlp(shape, v.latent_dim, _likelihood(cfg), hidden=v.hidden, depth=v.depth)


def build_categorical(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    from genlab.autoencoders import CategoricalVAE

    v: CategoricalVAEOptions = cfg.options  # type: ignore[assignment]
    return CategoricalVAE.with_mlp(
        shape, v.n_latents, v.n_classes, _likelihood(cfg), hidden=v.hidden, depth=v.depth,
        estimator=v.estimator, tau=v.tau, baseline=v.baseline, n_samples=v.n_samples,
    )  # fmt: skip


def describe_gaussian(cfg: RunConfig) -> str:
    v: VAEOptions = cfg.options  # type: ignore[assignment]
    return f"latent {v.latent_dim}, MLP {v.hidden}x{v.depth}, decoder {decoder_name(cfg)}"


def describe_categorical(cfg: RunConfig) -> str:
    v: CategoricalVAEOptions = cfg.options  # type: ignore[assignment]
    return (f"{v.n_latents} x {v.n_classes}-way latents, {v.estimator}, "
            f"MLP {v.hidden}x{v.depth}, decoder {decoder_name(cfg)}")  # fmt: skip


def likelihood(settings: LikelihoodSection) -> list[LikelihoodBound]:
    """The ELBO (averaged over `elbo_draws` posterior draws) and the IWAE-k bound."""
    return [LikelihoodBound("ELBO", {"k": 1}, draws=settings.elbo_draws),
            LikelihoodBound(f"IWAE k={settings.k}", {"k": settings.k}, draws=1)]  # fmt: skip


FAMILIES = (
    Family(name="vae", options=VAEOptions, build=build_gaussian, describe=describe_gaussian,
           description="Gaussian VAE with MLP encoder/decoder; ELBO and IWAE-k bounds",
           likelihood=likelihood, check=check),  # fmt: skip
    Family(name="categorical-vae", options=CategoricalVAEOptions, build=build_categorical,
           describe=describe_categorical, likelihood=likelihood, check=check,
           description="VAE with categorical latents (Gumbel-softmax, straight-through or "
                       "REINFORCE); ELBO and IWAE-k bounds"),  # fmt: skip
)
