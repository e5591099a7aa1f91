"""A UNet for images conditioned on noise level, class label and an optional context sequence.

Architecture of Ho et al. 2020 (appendix B) with the improvements of Dhariwal & Nichol 2021
(sec. 3, "ADM"): residual blocks with GroupNorm + SiLU, adaptive group normalisation
AdaGN(h, y) = y_s * GroupNorm(h) + y_b (Dhariwal & Nichol 2021, sec. 3), self-attention at
chosen levels, a class embedding added to the time embedding, and zero-initialised last
layers so every residual branch and the network output start at zero. With `context_dim`
set, attention levels also cross-attend to a context sequence (Rombach et al. 2022, eq. 2)
whose padded positions a key padding mask hides; called without a context, the
cross-attention branches are skipped (contribute zero). With `pooled_dim` set, a pooled
conditioning vector (a sentence embedding) is embedded and added to the time embedding
like the class embedding. A `genlab.nets.context.Context` passed as `cond` supplies both.

Spatial sizes: the input is zero-padded on the bottom/right to a multiple of
2 ** (len(channel_mult) - 1) and the output is cropped back, so 8x8, 28x28 and odd sizes work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.configs import UNetConfig
from genlab.nets.context import ConditionedBackbone, Context
from genlab.nets.layers import (
    Attention,
    LabelEmbedding,
    TimeEmbedding,
    VectorEmbedding,
    maybe_checkpoint,
    norm_groups,
    zero_,
)

__all__ = ["UNet", "UNetConfig"]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, AdaGN scale-shift from the embedding, SiLU-dropout-conv (zero-init),
    plus a (1x1 when widths differ) skip (Dhariwal & Nichol 2021, sec. 3).
    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))
        self.norm2 = nn.GroupNorm(norm_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift  # AdaGN
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Pre-norm self-attention over the H*W positions, then (optionally) cross-attention to a
    context sequence (padded keys masked out); output projections zero-initialised.
    x: (B, C, H, W), context: (B, L, Cctx), mask: (B, L) bool -> (B, C, H, W)."""

    def __init__(self, channels: int, head_dim: int, context_dim: int | None) -> None:
        super().__init__()
        heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(norm_groups(channels), channels)
        self.attn = Attention(channels, heads, zero_out=True)
        self.cross: Attention | None = None
        if context_dim is not None:
            self.cross_norm = nn.LayerNorm(channels)
            self.cross = Attention(channels, heads, context_dim=context_dim, zero_out=True)

    def forward(
        self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        b, c, hh, ww = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        h = x.flatten(2).transpose(1, 2) + self.attn(tokens)  # (B, HW, C)
        if self.cross is not None and context is not None:
            h = h + self.cross(self.cross_norm(h), context, mask)
        return h.transpose(1, 2).reshape(b, c, hh, ww)


class Stage(nn.Module):
    """One step of the UNet: a residual block, optionally followed by attention, run under
    gradient checkpointing when asked."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None, use_checkpoint: bool) -> None:
        super().__init__()
        self.res, self.attn, self.use_checkpoint = res, attn, use_checkpoint

    def _run(
        self, x: Tensor, emb: Tensor, context: Tensor | None, mask: Tensor | None,
        skip: Tensor | None,
    ) -> Tensor:  # fmt: skip
        if skip is not None:  # inside the checkpoint, so the concatenation is not stored
            x = torch.cat([x, skip], dim=1)  # (B, C + C_skip, H, W)
        h = self.res(x, emb)
        return self.attn(h, context, mask) if self.attn is not None else h

    def forward(
        self, x: Tensor, emb: Tensor, context: Tensor | None, mask: Tensor | None,
        skip: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        return maybe_checkpoint(self._run, self.use_checkpoint, x, emb, context, mask, skip)


class UNet(nn.Module, ConditionedBackbone):
    """x (B, C, H, W), t (B,), cond (B,) long labels, a `Context` or None, *, context
    (B, L, Cctx), context_mask (B, L) bool, pooled (B, P) or None -> (B, C_out, H, W). The
    output convolution is zero-initialised, so the net outputs 0 at initialisation
    (Dhariwal & Nichol 2021, sec. 3)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        self.config = cfg
        ch, emb_dim = cfg.channels, 4 * cfg.channels
        self.time_embed = TimeEmbedding(emb_dim, freq_dim=ch)
        self.label_embed = LabelEmbedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        self.pooled_embed = VectorEmbedding(cfg.pooled_dim, emb_dim) if cfg.pooled_dim else None
        self.input_conv = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        def stage(c_in: int, c_out: int, level: int) -> Stage:
            res = ResBlock(c_in, c_out, emb_dim, cfg.dropout)
            attn = None
            if level in cfg.attention_levels:
                attn = AttentionBlock(c_out, cfg.head_dim, cfg.context_dim)
            return Stage(res, attn, cfg.use_checkpoint)

        n_levels = len(cfg.channel_mult)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [ch], ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(stage(c, ch * mult, level))
                c = ch * mult
                skips.append(c)
            if level < n_levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        middle_attn = AttentionBlock(c, cfg.head_dim, cfg.context_dim)  # always (Ho et al.)
        self.middle = nn.ModuleList(
            [
                Stage(ResBlock(c, c, emb_dim, cfg.dropout), middle_attn, cfg.use_checkpoint),
                Stage(ResBlock(c, c, emb_dim, cfg.dropout), None, cfg.use_checkpoint),
            ]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(stage(c + skips.pop(), ch * mult, level))
                c = ch * mult
            if level > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(norm_groups(c), c)
        out_channels = cfg.out_channels if cfg.out_channels is not None else cfg.in_channels
        self.out_conv = zero_(nn.Conv2d(c, out_channels, 3, padding=1))

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
        cfg = self.config
        cond, context, mask, pooled = self.conditions(cond, context, context_mask, pooled)
        height, width = x.shape[-2:]
        factor = 2 ** (len(cfg.channel_mult) - 1)
        pad_h, pad_w = -height % factor, -width % factor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, C, H', W') with H', W' multiples of factor
        emb = self.embed(t.expand(x.shape[0]) if t.ndim == 0 else t, cond, pooled)  # (B, E)
        h = self.input_conv(x)  # (B, ch, H', W')
        hs = [h]
        blocks, downs = iter(self.down), iter(self.downsample)
        for level in range(len(cfg.channel_mult)):
            for _ in range(cfg.num_res_blocks):
                h = next(blocks)(h, emb, context, mask)
                hs.append(h)
            if level < len(cfg.channel_mult) - 1:
                h = next(downs)(h)  # (B, c, H/2, W/2)
                hs.append(h)
        for block in self.middle:
            h = block(h, emb, context, mask)
        blocks, ups = iter(self.up), iter(self.upsample)
        for level in reversed(range(len(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(blocks)(h, emb, context, mask, hs.pop())
            if level > 0:
                h = next(ups)(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out_conv(F.silu(self.out_norm(h)))  # (B, C_out, H', W')
        return out[..., :height, :width]
