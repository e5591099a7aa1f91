"""Coupling layers (NICE, Real NVP, Glow), their partitions and the NICE scaling layer.

A partition splits x into a conditioning part x_a and a transformed part x_b.
Additive coupling (Dinh et al., *NICE*, 2014, eq. 4 with m = conditioner):
    y_a = x_a,  y_b = x_b + t(x_a),                      ln|det| = 0.
Affine coupling (Dinh et al., *Real NVP*, 2017, eq. 7; Kingma & Dhariwal, *Glow*, 2018,
Table 1): y_a = x_a,  y_b = x_b * exp(log_s(x_a)) + t(x_a),  ln|det| = sum log_s.
Masked form (Real NVP eq. 9): y = b*x + (1-b)*(x*exp(log_s(b*x)) + t(b*x)) with a
checkerboard mask b. The log-scale is kept bounded for stability: ``"tanh"`` uses
log_s = c*tanh(raw/c) (a soft clamp at +-c, slope one at 0), ``"sigmoid"`` uses the Glow
code's s = sigmoid(raw + 2).
Diagonal scaling (NICE sec. 3.3): y = x * exp(s), ln|det| = sum s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.flows.base import FlowLayer

__all__ = [
    "Partition",
    "ChannelPartition",
    "CheckerboardPartition",
    "AdditiveCoupling",
    "AffineCoupling",
    "DiagonalScaling",
    "ScaleKind",
]

ScaleKind = Literal["tanh", "sigmoid"]


class Partition(nn.Module, ABC):
    """Parameter-free split of x into (x_a, x_b) and its exact merge (buffers only)."""

    @abstractmethod
    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_a, x_b): x_a conditions, x_b is transformed."""

    @abstractmethod
    def merge(self, xa: Tensor, yb: Tensor) -> Tensor:
        """Reassemble y from the unchanged x_a and the transformed y_b."""

    def active(self, xb: Tensor) -> Tensor | None:
        """Mask over x_b of the entries that are transformed (None: all of them)."""
        return None


class ChannelPartition(Partition):
    """Split along dim 1 (features of vectors, channels of images).

    ``interleave=False``: halves (Real NVP channel mask, Glow split); ``True``: even/odd
    indices (NICE sec. 5.1). ``flip`` swaps the roles of the two parts."""

    def __init__(self, n: int, *, flip: bool = False, interleave: bool = False) -> None:
        super().__init__()
        if n < 2:
            raise ValueError(f"ChannelPartition needs at least 2 channels, got {n}")
        idx = torch.arange(n)
        a, b = (idx[0::2], idx[1::2]) if interleave else (idx[: n // 2], idx[n // 2 :])
        if flip:
            a, b = b, a
        self.register_buffer("idx_a", a, persistent=False)
        self.register_buffer("idx_b", b, persistent=False)
        self.register_buffer("inv_perm", torch.argsort(torch.cat([a, b])), persistent=False)
        self.n_a, self.n_b = len(a), len(b)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.idx_a), x.index_select(1, self.idx_b)

    def merge(self, xa: Tensor, yb: Tensor) -> Tensor:
        return torch.cat([xa, yb], 1).index_select(1, self.inv_perm)


class CheckerboardPartition(Partition):
    """Real NVP checkerboard mask b over (H, W) (sec. 3.4): x_a = b*x, x_b = x, and only the
    entries with b = 0 change. ``parity`` picks which squares condition."""

    def __init__(self, height: int, width: int, *, parity: int = 0) -> None:
        super().__init__()
        ii, jj = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        mask = ((ii + jj) % 2 == parity).float()[None, None]  # (1, 1, H, W)
        self.register_buffer("mask", mask, persistent=False)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.mask, x

    def merge(self, xa: Tensor, yb: Tensor) -> Tensor:
        return yb  # entries under the mask were left unchanged in y_b

    def active(self, xb: Tensor) -> Tensor | None:
        return 1.0 - self.mask


class AdditiveCoupling(FlowLayer):
    """NICE additive coupling, eq. 4: y_b = x_b + t(x_a); unit Jacobian determinant.

    ``conditioner(x_a, cond)`` must return a tensor shaped like x_b."""

    def __init__(self, partition: Partition, conditioner: nn.Module) -> None:
        super().__init__()
        self.partition = partition
        self.conditioner = conditioner

    def _shift(self, xa: Tensor, xb: Tensor, cond: Tensor | None) -> Tensor:
        t = self.conditioner(xa, cond)  # shaped like x_b
        mask = self.partition.active(xb)
        return t if mask is None else t * mask

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = self.partition.split(x)
        yb = xb + self._shift(xa, xb, cond)
        return self.partition.merge(xa, yb), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        za, zb = self.partition.split(z)
        return self.partition.merge(za, zb - self._shift(za, zb, cond))


class AffineCoupling(FlowLayer):
    """Real NVP / Glow affine coupling, y_b = x_b * exp(log_s) + t (Real NVP eq. 7).

    ``conditioner(x_a, cond)`` returns 2 x (channels of x_b) along dim 1: [t, raw log-scale].
    ``scale``: ``"tanh"`` -> log_s = c tanh(raw/c) with c = ``scale_bound``; ``"sigmoid"`` ->
    s = sigmoid(raw + 2) (Glow). With a zero-initialised last conditioner layer the tanh
    coupling starts as the identity."""

    def __init__(
        self,
        partition: Partition,
        conditioner: nn.Module,
        *,
        scale: ScaleKind = "tanh",
        scale_bound: float = 3.0,
    ) -> None:
        super().__init__()
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        self.partition = partition
        self.conditioner = conditioner
        self.scale = scale
        self.scale_bound = scale_bound

    def _params(self, xa: Tensor, xb: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.conditioner(xa, cond)  # (B, 2 C_b, ...)
        t, raw = h.chunk(2, dim=1)
        if self.scale == "tanh":
            log_s = self.scale_bound * torch.tanh(raw / self.scale_bound)
        else:
            log_s = F.logsigmoid(raw + 2.0)
        mask = self.partition.active(xb)
        if mask is not None:
            t, log_s = t * mask, log_s * mask
        return t, log_s

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = self.partition.split(x)
        t, log_s = self._params(xa, xb, cond)
        yb = xb * torch.exp(log_s) + t
        return self.partition.merge(xa, yb), log_s.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        za, zb = self.partition.split(z)
        t, log_s = self._params(za, zb, cond)
        return self.partition.merge(za, (zb - t) * torch.exp(-log_s))


class DiagonalScaling(FlowLayer):
    """NICE's final scaling layer (sec. 3.3): y = x * exp(s), ln|det| = sum(s), s per dimension."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ld = self.log_scale.sum().expand(x.shape[0])  # (B,)
        return x * torch.exp(self.log_scale), ld

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z * torch.exp(-self.log_scale)
