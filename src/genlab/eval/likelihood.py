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
from genlab.eval.progress import DelayedProgress
from genlab.families import LikelihoodBound

__all__ = ["EVAL_BATCH", "Estimate", "LikelihoodSettings", "draw_se", "estimate", "nll",
           "nll_draws"]  # fmt: skip

EVAL_BATCH = 128  # examples per log_prob call: small enough for a progress bar that moves


class LikelihoodSettings(Protocol):
    """The fields of `genlab.config.LikelihoodSection` that the estimators read."""

    draws: int
    seed: int


def _is_random(
    model: nn.Module, x: Tensor, cond: Tensor | None, bound: LikelihoodBound, seed: int
) -> bool:
    """Whether the estimate depends on its draw: two generators on two examples differ."""
    xs, cs = x[:2], None if cond is None else cond[:2]
    lp = [model.log_prob(xs, cs, generator=torch.Generator().manual_seed(seed + k),  # type: ignore[operator]
                         **bound.options) for k in (0, 1)]  # fmt: skip
    return not torch.equal(lp[0], lp[1])


@torch.no_grad()
def nll_draws(
    model: nn.Module,
    x: Tensor,
    settings: LikelihoodSettings,
    bound: LikelihoodBound,
    *,
    cond: Tensor | None = None,
    draws: int | None = None,
    batch_size: int = EVAL_BATCH,
    progress: bool = True,
) -> Tensor:
    """-ln p(x) in nats, (draws, N) float64: one row per fixed draw of the estimator's
    randomness (dequantisation, Hutchinson probes, importance samples), draw d from a
    generator seeded `seed + d`; `draws` defaults to the bound's, else the settings'. A
    deterministic estimate (two draws agree on the first examples) is computed once.
    `progress`: a progress bar with an ETA when the evaluation runs for more than a few
    seconds (`genlab.eval.progress`)."""
    was_training = model.training
    model.eval()
    n_draws = draws or bound.draws or settings.draws
    try:
        if n_draws > 1 and not _is_random(model, x, cond, bound, settings.seed):
            n_draws = 1
        out = torch.zeros(n_draws, x.shape[0], dtype=torch.float64)
        label = f"likelihood ({bound.name})"
        with DelayedProgress(n_draws * x.shape[0], label, enabled=progress) as bar:
            for d in range(n_draws):
                g = torch.Generator().manual_seed(settings.seed + d)
                for i in range(0, x.shape[0], batch_size):
                    xb = x[i : i + batch_size]
                    cb = None if cond is None else cond[i : i + batch_size]
                    lp = model.log_prob(xb, cb, generator=g, **bound.options)  # type: ignore[operator]
                    out[d, i : i + batch_size] = -lp.double().cpu()
                    bar.advance(xb.shape[0])
    finally:
        model.train(was_training)
    return out


def nll(
    model: nn.Module,
    x: Tensor,
    settings: LikelihoodSettings,
    bound: LikelihoodBound,
    **options: Any,
) -> Tensor:
    """-ln p(x) in nats per example, (N,) float64, by one `bound` of the model's family
    (the keyword arguments of its `log_prob`), averaged over the draws of `nll_draws`
    (`options`: its keywords `cond`, `draws`, `batch_size`; no progress bar unless
    `progress=True`)."""
    return nll_draws(model, x, settings, bound, **{"progress": False, **options}).mean(0)


@dataclass
class Estimate:
    """A test likelihood: mean NLL in nats and, for discrete data, bits/dim (± std. error
    over examples). `name` says which bound (e.g. "IWAE k=1000"). `mc_se` is the standard
    error of the mean NLL due to the estimator's own randomness (Hutchinson probes,
    dequantisation, importance samples) from the spread of its `draws`: 0 for a
    deterministic estimate, NaN for one draw of a random one."""

    name: str
    nats: float
    nats_se: float
    bpd: float | None
    bpd_se: float | None
    n: int
    per_example: Tensor
    mc_se: float = math.nan
    draws: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "nats": self.nats, "nats_se": self.nats_se, "bpd": self.bpd,
                "bpd_se": self.bpd_se, "n": self.n, "mc_se": self.mc_se,
                "draws": self.draws}  # fmt: skip


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
        per_draw = nll_draws(model, x, settings, bound, cond=cond)  # (D, N)
        per = per_draw.mean(0)
        nats, nats_se = _mean_se(per)
        bpd = bpd_se = None
        if image:
            bpd, bpd_se = bits_per_dim(nats, dim), bits_per_dim(nats_se, dim)
        out.append(Estimate(bound.name, nats, nats_se, bpd, bpd_se, x.shape[0], per,
                            mc_se=draw_se(per_draw, bound.draws or settings.draws),
                            draws=per_draw.shape[0]))  # fmt: skip
    return out


def draw_se(per_draw: Tensor, asked: int) -> float:
    """Standard error of the mean over examples of `per_draw` (D, N) due to the draws: with
    s_i^2 the variance of example i over its D draws, sqrt(sum_i s_i^2 / D) / N. A single
    row is a deterministic estimate (0) when `asked` > 1 draws were asked for (`nll_draws`
    computes those once), unknown (NaN) when one was asked for."""
    d, n = per_draw.shape
    if d == 1:
        return 0.0 if asked > 1 else math.nan
    if not bool(torch.isfinite(per_draw).all()):
        return math.nan
    return float((per_draw.var(0).sum() / d).sqrt() / n)
