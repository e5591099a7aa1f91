"""An MLP for vector data conditioned on a scalar time (and optionally a class label)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.nets.configs import MLPConfig

__all__ = ["MLP", "FlatNet", "sinusoidal_embedding"]


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style features of a scalar (Vaswani et al. 2017; Ho et al. 2020):
    [cos(t w_i), sin(t w_i)], w_i geometric from 1 down to 1 / max_period. t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    args = t.to(dtype)[:, None] * freqs.to(dtype)[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class MLP(nn.Module):
    """x (B, D), t (B,), cond (B,) labels or None -> (B, D).

    The time embedding (and the class embedding, when `num_classes` is set) is added to the
    first hidden layer. Label `num_classes` is the null label for classifier-free guidance.
    `dropout` > 0 applies dropout (Srivastava et al. 2014) after every hidden activation,
    in training mode only; at 0 no dropout layers are built (state-dict keys unchanged).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = MLPConfig.hidden,
        depth: int = MLPConfig.depth,
        time_dim: int = MLPConfig.time_dim,
        num_classes: int | None = None,
        dropout: float = MLPConfig.dropout,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dim, self.time_dim = dim, time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.inp = nn.Linear(dim, hidden)
        self.label = nn.Embedding(num_classes + 1, hidden) if num_classes else None

        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        blocks: list[nn.Module] = []
        for _ in range(depth - 1):
            blocks += [nn.SiLU(), *drop(), nn.Linear(hidden, hidden)]
        self.body = nn.Sequential(*blocks, nn.SiLU(), *drop(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.inp(x) + self.time_mlp(
            sinusoidal_embedding(t, self.time_dim).to(x.dtype)
        )  # (B, hidden)
        if self.label is not None and cond is not None:
            h = h + self.label(cond.long())
        return self.body(h)


class FlatNet(nn.Module):
    """A vector network (B, D) applied to images (B, C, H, W) through their flattened pixels."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.shape = net, tuple(shape)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(x.flatten(1), t, cond).reshape(x.shape)
