"""DiT: a diffusion transformer on image patches (Peebles & Xie 2023).

Patchify (sec. 3.2, fig. 4) -> add fixed 2-D sin-cos positional embeddings -> N blocks with
adaLN-Zero conditioning on the sum of time and label embeddings (sec. 3.2, "adaLN-Zero
block": shift, scale and gate regressed from the conditioning, all zero-initialised so every
block starts as the identity) -> final adaLN + linear decoder -> unpatchify. With
`context_dim` set, every block also cross-attends to a context sequence after self-attention
(as in PixArt-alpha, Chen et al. 2023, sec. 2.3), output projection zero-initialised,
padded context positions hidden by a key padding mask; called without a context, the
cross-attention branches are skipped (contribute zero). With `pooled_dim` set, a pooled
conditioning vector (a sentence embedding) is embedded and added to the adaLN conditioning
next to time and label. A `genlab.nets.context.Context` passed as `cond` supplies both.

Spatial sizes: the input is zero-padded on the bottom/right to a multiple of `patch_size` and
the output cropped back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.configs import DiTConfig
from genlab.nets.context import ConditionedBackbone, Context
from genlab.nets.layers import (
    Attention,
    LabelEmbedding,
    TimeEmbedding,
    VectorEmbedding,
    maybe_checkpoint,
    modulate,
    zero_,
)

__all__ = ["DiT", "DiTConfig", "sincos_2d"]


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """[sin(p w_i), cos(p w_i)] with w_i = 10000^(-i / (dim/2)) (Vaswani et al. 2017, sec. 3.5).
    positions: (N,) -> (N, dim)."""
    omega = 1.0 / 10_000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    args = positions.double()[:, None] * omega[None, :]  # (N, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """Fixed 2-D sin-cos positional embedding (Peebles & Xie 2023, sec. 3.2, after MAE, He et
    al. 2022): half the channels encode the row, half the column. -> (grid_h * grid_w, dim)."""
    if dim % 4:
        raise ValueError(f"the DiT width must be a multiple of 4 for 2-D sin-cos, got {dim}")
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )
    emb = torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], 1)
    return emb.float()  # (N, dim)


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (Peebles & Xie 2023, fig. 3):
    x += gate_a * Attn(modulate(LN(x))), [x += CrossAttn(LN(x), ctx)], x += gate_m * MLP(...).
    x: (B, N, D), c: (B, D), context: (B, L, Cctx), mask: (B, L) bool -> (B, N, D)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, cfg.num_heads)
        self.cross: Attention | None = None
        if cfg.context_dim is not None:
            self.cross_norm = nn.LayerNorm(d, eps=1e-6)
            self.cross = Attention(d, cfg.num_heads, context_dim=cfg.context_dim, zero_out=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)
        )
        self.ada = zero_(nn.Linear(d, 6 * d))  # adaLN-Zero: all six start at zero

    def forward(
        self, x: Tensor, c: Tensor, context: Tensor | None, mask: Tensor | None = None
    ) -> Tensor:
        mods = self.ada(F.silu(c)).chunk(6, dim=1)  # 6 x (B, D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        if self.cross is not None and context is not None:
            x = x + self.cross(self.cross_norm(x), context, mask)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module, ConditionedBackbone):
    """x (B, C, H, W), t (B,), cond (B,) long labels, a `Context` or None, *, context
    (B, L, Cctx), context_mask (B, L) bool, pooled (B, P) or None -> (B, C_out, H, W).
    Outputs exactly zero at initialisation (zero-initialised final adaLN modulation and
    linear decoder, Peebles & Xie 2023, sec. 3.2)."""

    def __init__(self, config: DiTConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else DiTConfig()
        self.config = cfg
        d, p = cfg.hidden, cfg.patch_size
        self.out_channels = cfg.out_channels if cfg.out_channels is not None else cfg.in_channels
        self.patch_embed = nn.Conv2d(cfg.in_channels, d, p, stride=p)
        self.time_embed = TimeEmbedding(d, freq_dim=256)
        self.label_embed = LabelEmbedding(cfg.num_classes, d) if cfg.num_classes else None
        self.pooled_embed = VectorEmbedding(cfg.pooled_dim, d) if cfg.pooled_dim else None
        grid = math.ceil(cfg.input_size / p)
        self.register_buffer("pos", sincos_2d(d, grid, grid), persistent=False)  # (N, D)
        self.pos_grid = (grid, grid)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(d, 2 * d)
        self.final_linear = nn.Linear(d, p * p * self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform linears, patch embedding as a linear map, N(0, 0.02) time MLP, zero
        adaLN and decoder (Peebles & Xie 2023, sec. 3.2 and their released initialisation)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in self.time_embed.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            zero_(block.ada)
            if block.cross is not None:
                zero_(block.cross.out)
        zero_(self.final_ada)
        zero_(self.final_linear)

    def _pos_embed(self, grid_h: int, grid_w: int, like: Tensor) -> Tensor:
        if (grid_h, grid_w) == self.pos_grid:
            return self.pos.to(like.dtype)
        return sincos_2d(self.config.hidden, grid_h, grid_w).to(like.device, like.dtype)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | Context | None = None,
        *,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> Tensor:
        cfg, p = self.config, self.config.patch_size
        cond, context, mask, pooled = self.conditions(cond, context, context_mask, pooled)
        b, _, height, width = x.shape
        x = F.pad(x, (0, -width % p, 0, -height % p))
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), N = gh * gw
        h = h + self._pos_embed(gh, gw, h)
        c = self.embed(t.expand(b) if t.ndim == 0 else t, cond, pooled)  # (B, D)
        for block in self.blocks:
            h = maybe_checkpoint(block, cfg.use_checkpoint, h, c, context, mask)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)  # (B, D) each
        h = self.final_linear(modulate(self.final_norm(h), shift, scale))  # (B, N, p*p*C)
        h = h.view(b, gh, gw, p, p, self.out_channels)
        out = torch.einsum("bhwpqc->bchpwq", h).reshape(b, self.out_channels, gh * p, gw * p)
        return out[..., :height, :width]  # (B, C_out, H, W)
