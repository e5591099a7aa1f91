"""The flow-layer contract and the parameter-free bijections every architecture shares.

A flow layer is a bijection f with ``forward(x, cond=None) -> (z, logdet)``, where
``logdet = ln|det df/dx|`` per example (shape (B,)), and ``inverse(z, cond=None) -> x``.
Change of variables (Dinh et al., *NICE*, 2014, eq. 1; Rezende & Mohamed 2015, eq. 1):
ln p_X(x) = ln p_Z(f(x)) + ln|det df/dx|. A composition adds the log-determinants.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FlowLayer", "Compose", "Squeeze", "Flatten", "squeeze2d", "unsqueeze2d"]


class FlowLayer(nn.Module, ABC):
    """A bijection x -> z with a tractable log-determinant (see module docstring)."""

    @abstractmethod
    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = f(x) and ln|det df/dx| of shape (B,)."""

    @abstractmethod
    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """x = f^{-1}(z)."""


def _zeros_logdet(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)  # (B,)


class Compose(FlowLayer):
    """f = f_K o ... o f_1; ln|det| = sum_k ln|det df_k| (NICE, Dinh et al. 2014, sec. 2)."""

    def __init__(self, layers: Sequence[FlowLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = _zeros_logdet(x)
        for layer in self.layers:
            x, ld = layer(x, cond)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z, cond)
        return z


def squeeze2d(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels (Real NVP, sec. 3.6)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze2d(z: Tensor) -> Tensor:
    """Inverse of :func:`squeeze2d`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c4, h, w = z.shape
    z = z.reshape(b, c4 // 4, 2, 2, h, w)
    z = z.permute(0, 1, 4, 2, 5, 3)  # (B, C, H, 2, W, 2)
    return z.reshape(b, c4 // 4, 2 * h, 2 * w)


class Squeeze(FlowLayer):
    """Space-to-channel reshuffle, a permutation: log-determinant 0 (Real NVP, sec. 3.6)."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"Squeeze needs even height and width, got {tuple(x.shape)}")
        return squeeze2d(x), _zeros_logdet(x)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return unsqueeze2d(z)


class Flatten(FlowLayer):
    """(B, *shape) -> (B, prod(shape)); a reshape, log-determinant 0."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.dim = math.prod(self.shape)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], self.dim), _zeros_logdet(x)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z.reshape(z.shape[0], *self.shape)
