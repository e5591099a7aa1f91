"""Multi-scale architecture with factored-out variables (Dinh et al., *Real NVP*, 2017, sec. 3.6,
eq. 13-15; Kingma & Dhariwal, *Glow*, 2018, Fig. 2b).

Stage i maps h_{i-1} to h_i (shape ``out_shapes[i]``); after every stage but the last, the
first half of the channels is factored out as part of z and only the rest continues:
    (z_i, h_i) = split(f_i(h_{i-1})),   z = [z_1, ..., z_{L-1}, h_L]  (flattened, concatenated).
Factoring out is a reshuffle (ln|det| = 0), so ln|det| is the sum over stages. The output is
(B, D) with D the data dimension; the base density is a standard normal on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.flows.base import FlowLayer

__all__ = ["MultiScale"]


class MultiScale(FlowLayer):
    """Stages with factor-out between them; ``out_shapes[i]`` = (C, H, W) after stage i."""

    def __init__(self, stages: Sequence[FlowLayer], out_shapes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        if len(stages) != len(out_shapes) or not stages:
            raise ValueError("MultiScale needs one output shape per stage (at least one stage)")
        self.stages = nn.ModuleList(stages)
        self.out_shapes = [tuple(int(s) for s in shape) for shape in out_shapes]
        # shapes of the factored-out pieces, then of the final h_L
        self.piece_shapes: list[tuple[int, ...]] = []
        for c, h, w in self.out_shapes[:-1]:
            self.piece_shapes.append((c // 2, h, w))
        self.piece_shapes.append(self.out_shapes[-1])

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        pieces: list[Tensor] = []
        h = x
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            h, ld = stage(h, cond)  # (B, C_i, H_i, W_i)
            total = total + ld
            if i < last:
                k = h.shape[1] // 2
                pieces.append(h[:, :k].flatten(1))
                h = h[:, k:]
        pieces.append(h.flatten(1))
        return torch.cat(pieces, 1), total  # (B, D)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        sizes = [math.prod(s) for s in self.piece_shapes]
        pieces = list(torch.split(z, sizes, dim=1))
        b = z.shape[0]
        h = pieces[-1].reshape(b, *self.piece_shapes[-1])
        for i in reversed(range(len(self.stages))):
            if i < len(self.stages) - 1:
                h = torch.cat([pieces[i].reshape(b, *self.piece_shapes[i]), h], 1)
            h = self.stages[i].inverse(h, cond)
        return h
