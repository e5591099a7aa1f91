"""Glow's layers: activation normalisation and the invertible 1x1 convolution.

Kingma & Dhariwal, *Glow: Generative Flow with Invertible 1x1 Convolutions*, NeurIPS 2018,
Table 1. Both act on dim 1 (channels of (B, C, H, W) images, features of (B, C) vectors);
log-determinants are multiplied by the number of spatial positions H*W.
- ActNorm (sec. 3.1): y = (x + b) * exp(log_s) per channel; data-dependent initialisation
  makes the first (training) batch zero-mean and unit-variance per channel.
  ln|det| = H*W*sum(log_s).
- Invertible 1x1 convolution (sec. 3.2): y = W x per position, ln|det| = H*W*ln|det W|.
  LU-decomposed (eq. 10): W = P L (U + diag(s)), ln|det| = H*W*sum(ln|s|).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.flows.base import FlowLayer

__all__ = ["ActNorm", "InvConv1x1"]


def _channel_view(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a (C,) vector to broadcast over dim 1 of x."""
    return v.reshape(1, -1, *([1] * (x.dim() - 2)))


def _n_positions(x: Tensor) -> int:
    return math.prod(x.shape[2:])  # H*W for images, 1 for vectors


def _channel_matmul(w: Tensor, x: Tensor) -> Tensor:
    """y[:, i, ...] = sum_j w[i, j] x[:, j, ...]."""
    return torch.einsum("ij,bj...->bi...", w, x)


class ActNorm(FlowLayer):
    """Per-channel affine map with data-dependent initialisation (Glow sec. 3.1).

    The first forward call in training mode sets b = -mean and log_s = -ln(std + eps) of
    that batch per channel, so its output has zero mean and unit variance per channel."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialisation from the batch x."""
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims)  # (C,)
        std = x.std(dim=dims, unbiased=False)  # (C,)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + _channel_view(self.bias, x)) * torch.exp(_channel_view(self.log_scale, x))
        ld = (_n_positions(x) * self.log_scale.sum()).expand(x.shape[0])  # (B,)
        return y, ld

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z * torch.exp(-_channel_view(self.log_scale, z)) - _channel_view(self.bias, z)


class InvConv1x1(FlowLayer):
    """Invertible 1x1 convolution (Glow sec. 3.2), plain or LU-decomposed (eq. 10).

    Initialised with a random rotation (orthogonal matrix), drawn from ``generator``."""

    def __init__(
        self, num_channels: int, *, lu: bool = True, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        c = num_channels
        q, _ = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))
        self.lu = lu
        if not lu:
            self.weight = nn.Parameter(q.float())
            return
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.register_buffer("eye", torch.eye(c))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def weight_matrix(self) -> Tensor:
        """W (C, C); in the LU form W = P (L + I) (U + diag(sign * exp(log_s)))."""
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def log_abs_det(self) -> Tensor:
        """ln|det W| (scalar)."""
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight)[1]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = _channel_matmul(self.weight_matrix(), x)
        ld = (_n_positions(x) * self.log_abs_det()).expand(x.shape[0])  # (B,)
        return y, ld

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return _channel_matmul(torch.linalg.inv(self.weight_matrix()), z)
