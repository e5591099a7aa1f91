"""Conditioner networks for coupling layers: they output the shift/log-scale of x_b from x_a.

The last layer is zero-initialised so that every coupling starts as the identity
(additive, or affine with tanh scale), as recommended for deep flows by Kingma & Dhariwal,
*Glow*, 2018, sec. 3.3. The convolutional net is Glow's 3x3 -> 1x1 -> 3x3 stack (sec. 3.3);
the MLP is NICE's coupling function m (Dinh et al. 2014, sec. 5.1) with ReLU units.
Conditioning: an optional per-example vector ``cond`` (B, cond_dim) enters additively
after the first layer.

Tails. A ReLU MLP extrapolates linearly, so a coupling's shift grows without bound away
from the training data and a test point a little outside it can be sent far into the base's
tail (on raw tables: hundreds of nats for one row). ``input_bound`` = b soft-clamps the
MLP's input, x -> b tanh(x / b) (slope one at 0): the shift and log-scale are then bounded
functions, every coupling tends to a fixed affine map far from the data, and the flow keeps
the tails of its base up to a bounded affine change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvConditioner", "MLPConditioner"]


def _check_cond(cond: Tensor | None, embed: nn.Linear | None) -> None:
    if cond is not None and embed is None:
        raise ValueError("this conditioner was built with cond_dim=0 but received cond")
    if cond is None and embed is not None:
        raise ValueError("this conditioner was built with cond_dim > 0 and needs cond")


class ConvConditioner(nn.Module):
    """(B, in_ch, H, W) -> (B, out_ch, H, W): conv3x3, ReLU, conv1x1, ReLU, conv3x3 (zero init)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        hidden: int = 64,
        *,
        cond_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, hidden, 3, padding=1)
        self.conv_mid = nn.Conv2d(hidden, hidden, 1)
        self.conv_out = nn.Conv2d(hidden, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.embed = nn.Linear(cond_dim, hidden) if cond_dim > 0 else None
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        _check_cond(cond, self.embed)
        h = self.conv_in(x)  # (B, hidden, H, W)
        if self.embed is not None and cond is not None:
            h = h + self.embed(cond)[:, :, None, None]
        h = self.drop(self.act(self.conv_mid(self.act(h))))  # (B, hidden, H, W)
        return self.conv_out(h)  # (B, out_ch, H, W)


class MLPConditioner(nn.Module):
    """(B, in_dim) -> (B, out_dim): ``n_layers`` hidden ReLU layers, zero-initialised output.

    ``dropout`` > 0 applies dropout after every hidden ReLU (training mode only);
    ``input_bound`` soft-clamps the input at +-input_bound (module docstring, *Tails*)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 64,
        n_layers: int = 2,
        *,
        cond_dim: int = 0,
        dropout: float = 0.0,
        input_bound: float | None = None,
    ) -> None:
        super().__init__()
        if input_bound is not None and not input_bound > 0:
            raise ValueError(f"input_bound must be > 0, got {input_bound}")
        self.input_bound = input_bound
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.first = nn.Linear(in_dim, hidden)
        self.embed = nn.Linear(cond_dim, hidden) if cond_dim > 0 else None
        act: list[nn.Module] = [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        body: list[nn.Module] = []
        for _ in range(n_layers - 1):
            body += [*act, nn.Linear(hidden, hidden)]  # ReLU and Dropout hold no state
        body += act
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        _check_cond(cond, self.embed)
        if self.input_bound is not None:
            x = self.input_bound * torch.tanh(x / self.input_bound)
        h = self.first(x)  # (B, hidden)
        if self.embed is not None and cond is not None:
            h = h + self.embed(cond)
        return self.out(self.body(h))  # (B, out_dim)
