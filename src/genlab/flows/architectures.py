"""Builders for the classic flow architectures, each returning one :class:`FlowLayer`.

- :func:`nice`: Dinh et al., *NICE*, 2014, sec. 5.1 - additive couplings with alternating
  even/odd partitions and MLP coupling functions, then a diagonal scaling layer (sec. 3.3).
- :func:`realnvp_vector` / :func:`realnvp_image`: Dinh et al., *Real NVP*, 2017 - affine
  couplings (eq. 7) on alternating feature halves; for images checkerboard couplings,
  squeeze, channel couplings and factor-out per scale (sec. 3.6). No batch normalisation;
  the log-scale is tanh-bounded instead.
- :func:`glow_vector` / :func:`glow_image`: Kingma & Dhariwal, *Glow*, 2018, Fig. 2 - steps
  of actnorm, invertible 1x1 convolution and affine coupling, in a multi-scale stack.
Image builders map (B, C, H, W) to a flat z of shape (B, C*H*W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genlab.flows.base import Compose, FlowLayer, Squeeze
from genlab.flows.conditioners import ConvConditioner, MLPConditioner
from genlab.flows.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    DiagonalScaling,
    ScaleKind,
)
from genlab.flows.glow import ActNorm, InvConv1x1
from genlab.flows.multiscale import MultiScale

__all__ = ["nice", "realnvp_vector", "glow_vector", "realnvp_image", "glow_image"]


def nice(
    dim: int,
    *,
    n_couplings: int = 4,
    hidden: int = 256,
    n_layers: int = 4,
    cond_dim: int = 0,
    dropout: float = 0.0,
    input_bound: float | None = None,
) -> Compose:
    """NICE on (B, dim) vectors: ``n_couplings`` additive couplings + diagonal scaling.

    ``dropout``: in the coupling MLPs (training mode only; not in the NICE paper);
    ``input_bound``: soft clamp of the MLPs' inputs (`MLPConditioner`)."""
    layers: list[FlowLayer] = []
    for i in range(n_couplings):
        part = ChannelPartition(dim, flip=i % 2 == 1, interleave=True)
        net = MLPConditioner(part.n_a, part.n_b, hidden, n_layers, cond_dim=cond_dim,
                             dropout=dropout, input_bound=input_bound)  # fmt: skip
        layers.append(AdditiveCoupling(part, net))
    layers.append(DiagonalScaling((dim,)))
    return Compose(layers)


def _affine_vector(
    dim: int,
    flip: bool,
    hidden: int,
    n_layers: int,
    scale: ScaleKind,
    cond_dim: int,
    input_bound: float | None,
) -> AffineCoupling:
    part = ChannelPartition(dim, flip=flip)
    net = MLPConditioner(part.n_a, 2 * part.n_b, hidden, n_layers, cond_dim=cond_dim,
                         input_bound=input_bound)  # fmt: skip
    return AffineCoupling(part, net, scale=scale)


def realnvp_vector(
    dim: int,
    *,
    n_couplings: int = 8,
    hidden: int = 64,
    n_layers: int = 2,
    scale: ScaleKind = "tanh",
    cond_dim: int = 0,
    input_bound: float | None = None,
) -> Compose:
    """Real NVP on (B, dim) vectors: affine couplings on alternating feature halves.
    ``input_bound``: soft clamp of the conditioners' inputs (`MLPConditioner`)."""
    layers = [
        _affine_vector(dim, i % 2 == 1, hidden, n_layers, scale, cond_dim, input_bound)
        for i in range(n_couplings)
    ]
    return Compose(layers)


def glow_vector(
    dim: int,
    *,
    n_steps: int = 8,
    hidden: int = 64,
    n_layers: int = 2,
    lu: bool = True,
    scale: ScaleKind = "tanh",
    cond_dim: int = 0,
    generator: torch.Generator | None = None,
    input_bound: float | None = None,
) -> Compose:
    """Glow steps on (B, dim) vectors: actnorm -> invertible linear map -> affine coupling.
    ``input_bound``: soft clamp of the conditioners' inputs (`MLPConditioner`)."""
    layers: list[FlowLayer] = []
    for _ in range(n_steps):
        layers += [
            ActNorm(dim),
            InvConv1x1(dim, lu=lu, generator=generator),
            _affine_vector(dim, False, hidden, n_layers, scale, cond_dim, input_bound),
        ]
    return Compose(layers)


def _channel_coupling(
    c: int, flip: bool, hidden: int, scale: ScaleKind, cond_dim: int, dropout: float
) -> AffineCoupling:
    part = ChannelPartition(c, flip=flip)
    net = ConvConditioner(part.n_a, 2 * part.n_b, hidden, cond_dim=cond_dim, dropout=dropout)
    return AffineCoupling(part, net, scale=scale)


def _level_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, int, int]]:
    """Output shape of each scale: squeeze at entry, half the channels factored out after."""
    c, h, w = (int(s) for s in shape)
    out = []
    for _ in range(levels):
        if h % 2 or w % 2:
            raise ValueError(f"{levels} levels need H, W divisible by 2^{levels}: {tuple(shape)}")
        c, h, w = 4 * c, h // 2, w // 2
        out.append((c, h, w))
        c = c - c // 2
    return out


def realnvp_image(
    shape: Sequence[int],
    *,
    levels: int = 2,
    n_blocks: int = 8,
    n_checkerboard: int = 4,
    hidden: int = 64,
    scale: ScaleKind = "tanh",
    cond_dim: int = 0,
    dropout: float = 0.0,
) -> MultiScale:
    """Multi-scale Real NVP: ``n_checkerboard`` checkerboard couplings at full resolution,
    then per scale squeeze + ``n_blocks`` channel couplings (alternating halves) + factor-out."""
    c, h, w = (int(s) for s in shape)
    out_shapes = _level_shapes(shape, levels)
    stages: list[FlowLayer] = []
    for lvl, (cl, _, _) in enumerate(out_shapes):
        layers: list[FlowLayer] = []
        if lvl == 0:
            for i in range(n_checkerboard):
                net = ConvConditioner(c, 2 * c, hidden, cond_dim=cond_dim, dropout=dropout)
                part = CheckerboardPartition(h, w, parity=i % 2)
                layers.append(AffineCoupling(part, net, scale=scale))
        layers.append(Squeeze())
        for i in range(n_blocks):
            layers.append(_channel_coupling(cl, i % 2 == 1, hidden, scale, cond_dim, dropout))
        stages.append(Compose(layers))
    return MultiScale(stages, out_shapes)


def glow_image(
    shape: Sequence[int],
    *,
    levels: int = 2,
    n_steps: int = 8,
    hidden: int = 64,
    lu: bool = True,
    scale: ScaleKind = "sigmoid",
    cond_dim: int = 0,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> MultiScale:
    """Multi-scale Glow (Fig. 2b): per scale squeeze + ``n_steps`` x (actnorm, 1x1 conv,
    affine coupling) + factor-out."""
    out_shapes = _level_shapes(shape, levels)
    stages: list[FlowLayer] = []
    for cl, _, _ in out_shapes:
        layers: list[FlowLayer] = [Squeeze()]
        for _ in range(n_steps):
            layers += [
                ActNorm(cl),
                InvConv1x1(cl, lu=lu, generator=generator),
                _channel_coupling(cl, False, hidden, scale, cond_dim, dropout),
            ]
        stages.append(Compose(layers))
    return MultiScale(stages, out_shapes)
