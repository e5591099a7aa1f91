"""Test log-likelihood of any family, in nats per example and bits per dimension.

One estimator for every family, so that numbers are comparable across them. What a family
reports is its record's `likelihood` in `genlab.families`: a list of bounds, each the keyword
arguments of the family's `log_prob`, e.g.

- normalizing flows: the exact change of variables;
- diffusion (every path and parameterization) and CNFs: the probability-flow ODE / CNF
  with the instantaneous change of variables (exact trace or Hutchinson, dopri5 at the
  settings' tolerances);
- VAEs: the ELBO and the IWAE bound with k importance samples.

Image data are discrete. A model of them either wraps a continuous density in
`genlab.discrete.Dequantized` (its `log_prob` is one draw of a lower bound of ln P(pixels);
``draws`` fixed draws, seeds ``seed``, ``seed + 1``, ..., are averaged) or has a discrete
decoder (the VAE's discretised logistic); bits/dim = -ln P / (D ln 2) then bounds the
discrete NLL from above. A continuous density of the raw grid values has no bits/dim and
is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from genlab.density import bits_per_dim
from genlab.errors import ConfigError
from genlab.families import LikelihoodBound

__all__ = ["Estimate", "LikelihoodSettings", "estimate", "nll"]


class LikelihoodSettings(Protocol):
    """The fields of `genlab.config.LikelihoodSection` that the estimators read."""

    draws: int
    seed: int


@torch.no_grad()
def nll(
    model: nn.Module,
    x: Tensor,
    settings: LikelihoodSettings,
    bound: LikelihoodBound,
    *,
    cond: Tensor | None = None,
    draws: int | None = None,
    batch_size: int = 512,
) -> Tensor:
    """-ln p(x) in nats per example, (N,) float64, by one `bound` of the model's family
    (the keyword arguments of its `log_prob`), averaged over `draws` (default: the bound's,
    else the settings') fixed draws of the estimator's randomness (dequantisation,
    Hutchinson probes, importance samples): draw d uses a generator seeded `seed + d`."""
    was_training = model.training
    model.eval()
    n_draws = draws or bound.draws or settings.draws
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    try:
        for d in range(n_draws):
            g = torch.Generator().manual_seed(settings.seed + d)
            for i in range(0, x.shape[0], batch_size):
                xb = x[i : i + batch_size]
                cb = None if cond is None else cond[i : i + batch_size]
                lp = model.log_prob(xb, cb, generator=g, **bound.options)  # type: ignore[operator]
                total[i : i + batch_size] -= lp.double().cpu()
    finally:
        model.train(was_training)
    return total / n_draws


@dataclass
class Estimate:
    """A test likelihood: mean NLL in nats and, for discrete data, bits/dim (± std. error
    over examples). `name` says which bound (e.g. "IWAE k=1000")."""

    name: str
    nats: float
    nats_se: float
    bpd: float | None
    bpd_se: float | None
    n: int
    per_example: Tensor

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "nats": self.nats, "nats_se": self.nats_se, "bpd": self.bpd,
                "bpd_se": self.bpd_se, "n": self.n}  # fmt: skip


def _mean_se(v: Tensor) -> tuple[float, float]:
    if not bool(torch.isfinite(v).all()):
        return math.inf, math.nan
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan
    return float(v.mean()), se


def estimate(
    model: nn.Module,
    x: Tensor,
    settings: LikelihoodSettings,
    bounds: list[LikelihoodBound],
    *,
    cond: Tensor | None = None,
    image: bool = False,
) -> list[Estimate]:
    """The test NLL of `model` on `x` by each of its family's `bounds` (the VAEs: the ELBO
    and IWAE-k). Image data (`image`) need a model of the discrete pixels (`model.discrete`)
    and are reported in bits/dim too."""
    if image and not getattr(model, "discrete", False):
        raise ConfigError(
            "likelihood of image data needs a model of the discrete pixels: "
            "set data.dequantize = true (or use a VAE with its discrete decoder)"
        )
    dim = math.prod(x.shape[1:])
    out = []
    for bound in bounds:
        per = nll(model, x, settings, bound, cond=cond)
        nats, nats_se = _mean_se(per)
        bpd = bpd_se = None
        if image:
            bpd, bpd_se = bits_per_dim(nats, dim), bits_per_dim(nats_se, dim)
        out.append(Estimate(bound.name, nats, nats_se, bpd, bpd_se, x.shape[0], per))
    return out
