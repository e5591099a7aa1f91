"""Test log-likelihood of any family, in nats per example and bits per dimension.

One estimator for every family, so that numbers are comparable across them:

- normalizing flows: the exact change of variables;
- diffusion (every path and parameterization) and CNFs: the probability-flow ODE / CNF
  with the instantaneous change of variables (exact trace or Hutchinson, dopri5 at the
  settings' tolerances);
- VAEs: the IWAE bound with k importance samples (k = 1 is the ELBO).

Image data are discrete. A model of them either wraps a continuous density in
`genlab.discrete.Dequantized` (its `log_prob` is one draw of a lower bound of ln P(pixels);
``draws`` fixed draws, seeds ``seed``, ``seed + 1``, ..., are averaged) or has a discrete
decoder (the VAE's discretised logistic); bits/dim = -ln P / (D ln 2) then bounds the
discrete NLL from above. A continuous density of the raw grid values has no bits/dim and
is refused.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from genlab.autoencoders import DiscretizedLogisticLikelihood, LatentVAE
from genlab.diffusion.model import Diffusion
from genlab.discrete import Dequantized
from genlab.errors import ConfigError
from genlab.flows.cnf import ContinuousFlow
from genlab.ode.options import ODEOptions

__all__ = ["Estimate", "LikelihoodSettings", "estimate", "is_discrete", "log_prob_options", "nll"]

LN2 = math.log(2.0)


class LikelihoodSettings(Protocol):
    """The fields of `genlab.config.LikelihoodSection` that the estimators read."""

    draws: int
    seed: int
    trace: str
    probes: int
    rtol: float
    atol: float
    k: int


def _inner(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, Dequantized) else model


def is_discrete(model: nn.Module) -> bool:
    """Does `log_prob` bound a probability of discrete data (not a density)?"""
    inner = _inner(model)
    discrete_decoder = isinstance(inner, LatentVAE) and isinstance(
        inner.likelihood, DiscretizedLogisticLikelihood
    )
    return isinstance(model, Dequantized) or discrete_decoder


def log_prob_options(model: nn.Module, s: LikelihoodSettings, k: int | None = None) -> dict:
    """Keyword arguments of the family's own `log_prob` from the settings."""
    inner = _inner(model)
    if isinstance(inner, (Diffusion, ContinuousFlow)):
        return {"ode": ODEOptions(trace=s.trace, probes=s.probes, probe="rademacher",
                                  rtol=s.rtol, atol=s.atol, method="dopri5")}  # fmt: skip
    if isinstance(inner, LatentVAE):
        return dict(k=s.k if k is None else k)
    return {}


@torch.no_grad()
def nll(
    model: nn.Module,
    x: Tensor,
    settings: LikelihoodSettings,
    *,
    cond: Tensor | None = None,
    k: int | None = None,
    draws: int | None = None,
    batch_size: int = 512,
) -> Tensor:
    """-ln p(x) in nats per example, (N,) float64, averaged over `draws` (default the
    settings') fixed draws of the estimator's randomness (dequantisation, Hutchinson probes,
    importance samples). `k` overrides the VAE's importance samples (1: the ELBO)."""
    was_training = model.training
    model.eval()
    opts = log_prob_options(model, settings, k)
    n_draws = settings.draws if draws is None else draws
    takes_generator = "generator" in inspect.signature(_inner(model).log_prob).parameters
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    try:
        for d in range(n_draws):
            g = torch.Generator().manual_seed(settings.seed + d)
            for i in range(0, x.shape[0], batch_size):
                xb = x[i : i + batch_size]
                cb = None if cond is None else cond[i : i + batch_size]
                if isinstance(model, Dequantized):
                    lp = model.log_prob(xb, cb, generator=g, **opts)
                elif takes_generator:
                    lp = model.log_prob(xb, cb, generator=g, **opts)
                else:
                    lp = model.log_prob(xb, cb, **opts)
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
    *,
    cond: Tensor | None = None,
    image: bool = False,
) -> list[Estimate]:
    """The test NLL of `model` on `x`: one estimate (the VAE: the ELBO and IWAE-k). Image
    data (`image`) need a discrete model (`is_discrete`) and are reported in bits/dim too."""
    if image and not is_discrete(model):
        raise ConfigError(
            "likelihood of image data needs a model of the discrete pixels: "
            "set data.dequantize = true (or use a VAE with its discrete decoder)"
        )
    dim = math.prod(x.shape[1:])
    inner = _inner(model)
    if isinstance(inner, LatentVAE):
        elbo_draws = int(getattr(settings, "elbo_draws", settings.draws))
        plan = [("ELBO", 1, elbo_draws), (f"IWAE k={settings.k}", settings.k, 1)]
    else:
        plan = [(_method(inner), None, None)]
    out = []
    for name, k, draws in plan:
        per = nll(model, x, settings, cond=cond, k=k, draws=draws)
        nats, nats_se = _mean_se(per)
        bpd = bpd_se = None
        if image:
            bpd, bpd_se = nats / (dim * LN2), nats_se / (dim * LN2)
        out.append(Estimate(name, nats, nats_se, bpd, bpd_se, x.shape[0], per))
    return out


def _method(inner: nn.Module) -> str:
    if isinstance(inner, Diffusion):
        return "PF-ODE"
    if isinstance(inner, ContinuousFlow):
        return "CNF ODE"
    return "exact"
