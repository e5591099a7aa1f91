"""Normalizing flows as families: NICE, Real NVP and Glow, sharing the `[flow]` options.

Their likelihood is the exact change of variables; image data are dequantised
(`data.dequantize`), so the density of the dequantised pixels bounds their probability.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.errors import ConfigError
from genlab.families.base import Family, Shape
from genlab.nets.configs import MAX_LAYERS, MAX_LEVELS

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.flows import FlowLayer
    from genlab.protocol import GenerativeModel


class FlowOptions(BaseModel):
    """Normalizing flows (`genlab.flows.architectures`). Images: `levels` scales, each with
    `steps` couplings (realnvp; plus `checkerboard` couplings at full resolution) or Glow
    steps (actnorm, 1x1 convolution, coupling), conditioners are CNNs of width `hidden`.
    Vectors: `steps` couplings (Glow steps) with MLP conditioners of `layers` x `hidden`.
    NICE: `steps` additive couplings of MLPs `layers` x `hidden` over the flattened data,
    then the diagonal scaling. `scale` bounds affine log-scales (default: tanh for realnvp,
    sigmoid for glow); `dropout` acts in the image conditioners and NICE's MLPs.
    `tail_bound` (vectors): soft clamp of the MLP conditioners' inputs at +-tail_bound, so
    every coupling tends to a fixed affine map away from the data and a row outside the
    training range is not sent deep into the base's tail by an extrapolated shift.
    `base`: the standard normal, or a mixture of `components` diagonal Gaussians
    (`genlab.flows.mixture`: for data made of separate clusters; learned with the flow,
    fitted by EM to the first batch's latents, so `train.batch_size` >= `components`)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(8, ge=1, le=MAX_LAYERS)
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1, le=MAX_LAYERS)
    levels: int = Field(2, ge=1, le=MAX_LEVELS)
    checkerboard: int = Field(4, ge=0, le=MAX_LAYERS)
    scale: Literal["tanh", "sigmoid"] | None = None
    lu: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    tail_bound: float | None = Field(None, gt=0)
    base: Literal["normal", "mixture"] = "normal"
    components: int = Field(4, ge=1, le=256)


def _options(cfg: RunConfig) -> FlowOptions:
    return cfg.options  # type: ignore[return-value]


def _flow(cfg: RunConfig, shape: Shape) -> FlowLayer:
    from genlab.flows import (
        Compose,
        Flatten,
        glow_image,
        glow_vector,
        nice,
        realnvp_image,
        realnvp_vector,
    )

    f, family = _options(cfg), cfg.model.family
    dim = math.prod(shape)
    if family == "nice":
        flow = nice(dim, n_couplings=f.steps, hidden=f.hidden, n_layers=f.layers,
                    dropout=f.dropout, input_bound=f.tail_bound)  # fmt: skip
        return flow if len(shape) == 1 else Compose([Flatten(shape), flow])
    scale = f.scale or ("tanh" if family == "realnvp" else "sigmoid")
    if len(shape) == 3:
        try:
            if family == "realnvp":
                return realnvp_image(shape, levels=f.levels, n_blocks=f.steps,
                                     n_checkerboard=f.checkerboard, hidden=f.hidden,
                                     scale=scale, dropout=f.dropout)  # fmt: skip
            return glow_image(shape, levels=f.levels, n_steps=f.steps, hidden=f.hidden,
                              lu=f.lu, scale=scale, dropout=f.dropout)  # fmt: skip
        except ValueError as err:
            raise ConfigError(f"flow.levels: {err}") from None
    if family == "realnvp":
        return realnvp_vector(dim, n_couplings=f.steps, hidden=f.hidden, n_layers=f.layers,
                              scale=scale, input_bound=f.tail_bound)  # fmt: skip
    return glow_vector(dim, n_steps=f.steps, hidden=f.hidden, n_layers=f.layers, lu=f.lu,
                       scale=scale, input_bound=f.tail_bound)  # fmt: skip


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    from genlab.flows import GaussianMixtureBase, NormalizingFlow

    f = _options(cfg)
    base = None
    if f.base == "mixture":
        base = GaussianMixtureBase(math.prod(shape), f.components)
    return NormalizingFlow(_flow(cfg, shape), shape, base=base)


def describe(cfg: RunConfig) -> str:
    f = _options(cfg)
    dropout = f", dropout {f.dropout}" if f.dropout else ""
    base = f", base: mixture of {f.components}" if f.base == "mixture" else ""
    return f"{cfg.model.family}, {f.steps} steps, hidden {f.hidden}{dropout}{base}"


def check(cfg: RunConfig) -> None:
    f = _options(cfg)
    if f.dropout > 0 and not cfg.is_image and cfg.model.family != "nice":
        raise ConfigError("flow.dropout: only NICE and the image realnvp and glow have dropout")
    rows = cfg.train.batch_size // max(cfg.train.shards, 1)  # the first forward pass's rows
    if f.base == "mixture" and rows < f.components:
        raise ConfigError(
            f"flow.components = {f.components}: the mixture base is fitted to the first batch, "
            f"which needs at least as many rows (train.batch_size = {cfg.train.batch_size}"
            + (f" in {cfg.train.shards} shards)" if cfg.train.shards > 1 else ")")
        )


def _family(name: str, description: str) -> Family:
    return Family(name=name, description=description, options=FlowOptions, section="flow",
                  build=build, describe=describe, dequantize_images=True,
                  check=check)  # fmt: skip


FAMILIES = (
    _family("nice", "NICE: additive couplings and a diagonal scaling; exact likelihood"),
    _family("realnvp", "Real NVP: affine couplings, checkerboard and channel masks, "
                       "multi-scale; exact likelihood"),  # fmt: skip
    _family("glow", "Glow: actnorm, invertible 1x1 convolutions, affine couplings, "
                    "multi-scale; exact likelihood"),  # fmt: skip
)
