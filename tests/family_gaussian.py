"""A family written outside genlab, the way a user adds one: a Gaussian with full (or
diagonal) covariance, as one module and one `genlab.families.register` call.

The model: x = mu + L z, z ~ N(0, I), with L lower-triangular and a positive diagonal
(softplus of free parameters), so log p(x) = log N(L^{-1}(x - mu); 0, I) - sum log L_ii.
Its maximum-likelihood fit is the sample mean and the (biased) sample covariance, which
is what the tests check the trainer reaches.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from genlab.families import VECTOR, Family
from genlab.protocol import GenerativeModel


class GaussianOptions(BaseModel):
    """`[gaussian]`: `diagonal = true` keeps only the variances."""

    model_config = ConfigDict(extra="forbid")

    diagonal: bool = False


class Gaussian(GenerativeModel):
    loss_is_nll = True

    def __init__(self, dim: int, *, diagonal: bool = False) -> None:
        super().__init__()
        self.dim, self.diagonal = dim, diagonal
        self.mu = nn.Parameter(torch.zeros(dim))
        self.raw_diag = nn.Parameter(torch.full((dim,), math.log(math.e - 1.0)))  # softplus = 1
        self.off = nn.Parameter(torch.zeros(dim, dim))

    def scale_tril(self) -> Tensor:
        diag = torch.diag(nn.functional.softplus(self.raw_diag))
        if self.diagonal:
            return diag
        return diag + torch.tril(self.off, diagonal=-1)

    def log_prob(
        self, x: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        scale = self.scale_tril()
        z = torch.linalg.solve_triangular(scale, (x - self.mu).T, upper=False).T  # (B, D)
        log_det = torch.log(torch.diagonal(scale)).sum()
        return -0.5 * (z * z).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) - log_det

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, cond)

    @torch.no_grad()
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator)
        return self.mu + z @ self.scale_tril().T


def build(cfg, shape: tuple[int, ...]) -> GenerativeModel:
    return Gaussian(shape[0], diagonal=cfg.options.diagonal)


FAMILY = Family(
    name="gaussian",
    description="a Gaussian with full or diagonal covariance (a test family)",
    options=GaussianOptions,
    build=build,
    describe=lambda cfg: "diagonal Gaussian" if cfg.options.diagonal else "full Gaussian",
    data=(VECTOR,),
)
