"""A decoder-only Transformer over a raster-ordered grid of codes, with a KV cache.

The sequence of inputs is ``[start(y), z_0, ..., z_{L-2}]``: input i predicts code z_i, so
one forward pass gives every conditional of the autoregressive factorisation
p(z | y) = prod_i p(z_i | z_<i, y) (van den Oord et al. 2017, "Neural Discrete Representation
Learning", sec. 3.3; Esser et al. 2021, "Taming Transformers", sec. 3.2). Class conditioning
enters through the start token: one start token per class plus a null one (index
``num_classes``) that doubles as the unconditional start, as in classifier-free guidance
(Ho & Salimans 2022).

Blocks are pre-LayerNorm (GPT-2, Radford et al. 2019) with scaled dot-product attention
(Vaswani et al. 2017, eq. 1) through `torch.nn.functional.scaled_dot_product_attention`:
causal while training, any boolean mask (a tree of candidates, `genlab.tokens.medusa`)
against the cache while decoding. Positions are learned, 1-D sin-cos over the raster index,
or 2-D sin-cos over (row, column) of the predicted cell (Vaswani et al. 2017, sec. 3.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.dit import sincos_1d, sincos_2d

__all__ = ["KVCache", "PriorTransformer", "TransformerConfig"]

Positions = Literal["learned", "sinusoidal", "sinusoidal-2d"]


@dataclass(frozen=True)
class TransformerConfig:
    """`vocab` codes K on a `grid` (h, w) (L = h w tokens), `num_classes` (0: unconditional),
    width `dim`, `depth` blocks of `heads` heads, MLP width `mlp_ratio` * dim, dropout."""

    vocab: int
    grid: tuple[int, int]
    num_classes: int = 0
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    positions: Positions = "learned"

    @property
    def length(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


class KVCache:
    """Keys and values of the inputs seen so far, per layer: (layers, B, heads, capacity,
    head_dim) each; `length` inputs are valid. New inputs are written after them by each
    layer (`write`); `advance` keeps them, `keep` keeps only some of them (the accepted path
    of a tree of candidates)."""

    def __init__(self, cfg: TransformerConfig, batch: int, capacity: int, like: Tensor) -> None:
        shape = (cfg.depth, batch, cfg.heads, capacity, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store (B, heads, T, head_dim) keys and values after the valid ones; returns all
        keys and values up to them, (B, heads, length + T, head_dim)."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} inputs, capacity {self.capacity}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        """Keep the t inputs just written."""
        self.length += t

    def keep(self, index: Tensor | Sequence[int]) -> None:
        """Of the inputs just written, keep those at `index` (ascending, (A,)) in that order
        (nothing moves when they are the first A)."""
        idx = index.tolist() if isinstance(index, Tensor) else list(index)
        count = len(idx)
        if idx != list(range(count)):
            src = self.length + torch.tensor(idx, device=self.k.device)  # (A,)
            dst = slice(self.length, self.length + count)
            self.k[:, :, :, dst] = self.k[:, :, :, src]
            self.v[:, :, :, dst] = self.v[:, :, :, src]
        self.length += count


class Block(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)) (pre-LN Transformer block)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), dropout(cfg.dropout)
        )
        self.drop = dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, mask: Tensor | None) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, dh)
        if cache is not None:
            k, v = cache.write(layer, k, v)  # (B, H, S, dh), S = cached + T
        causal = mask is None and t > 1 and k.shape[2] == t  # a whole sequence from scratch
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))  # (B, T, D)
        return x + self.mlp(self.norm2(x))


class PriorTransformer(nn.Module):
    """inputs (B, T) (codes 0..K-1; start tokens K + y, y = num_classes the null/unconditional
    one) at `positions` (T,) -> hidden states (B, T, dim) after the final LayerNorm;
    `logits(hidden)` -> (B, T, K). Weights N(0, 0.02), residual projections scaled by
    1/sqrt(2 depth) (Radford et al. 2019, sec. 2.3)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"width {cfg.dim} is not divisible by {cfg.heads} heads")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab + cfg.num_classes + 1, cfg.dim)
        self.pos: Tensor
        if cfg.positions == "learned":
            self.pos = nn.Parameter(torch.zeros(cfg.length, cfg.dim))
            nn.init.normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", _sincos(cfg), persistent=False)  # (L, D)
        self.drop = dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.ndim == 2 and name != "pos":
                nn.init.normal_(p, std=0.02)
            if name.endswith(("proj.weight", "mlp.2.weight")):
                p.data.mul_(1.0 / math.sqrt(2 * self.cfg.depth))
            if name.endswith("bias"):
                nn.init.zeros_(p)

    def start(self, labels: Tensor | None, batch: int) -> Tensor:
        """Start tokens (B, 1): K + label, or K + num_classes (null) without labels."""
        k, c = self.cfg.vocab, self.cfg.num_classes
        if labels is None:
            return torch.full((batch, 1), k + c, dtype=torch.long, device=self.head.weight.device)
        return (k + labels.long()).view(batch, 1)

    def forward(
        self,
        inputs: Tensor,
        positions: Tensor,
        *,
        cache: KVCache | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, T, D). Without a cache the inputs are a sequence from position 0,
        attended causally; with one they follow the cached inputs and attend to all of them
        and, by `mask` (T, cached + T) (None: causally), to each other. A mask is boolean
        (True: attend) or additive (0 or -inf), as `scaled_dot_product_attention` takes it."""
        x = self.drop(self.embed(inputs) + self.pos[positions])  # (B, T, D)
        if cache is not None and mask is None and inputs.shape[1] > 1 and cache.length > 0:
            mask = causal_after(cache.length, inputs.shape[1], x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, mask)
        return self.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.head(hidden)  # (..., K)

    def teacher_forced(self, codes: Tensor, labels: Tensor | None) -> Tensor:
        """Hidden states (B, L, D) of a whole code sequence (B, L): row i predicts z_i."""
        b, n = codes.shape
        inputs = torch.cat([self.start(labels, b), codes[:, :-1]], 1)  # (B, L)
        return self(inputs, torch.arange(n, device=codes.device))

    def prefill(
        self, labels: Tensor | None, prefix: Tensor | None, batch: int, capacity: int
    ) -> tuple[KVCache, Tensor]:
        """Start decoding: the start tokens and the given first codes `prefix` (B, P), P < L,
        in one causal pass into a new cache of `capacity` inputs -> (cache, hidden state at
        the last input (B, D), which predicts code P)."""
        inputs = self.start(labels, batch)  # (B, 1)
        if prefix is not None:
            if not 0 <= prefix.shape[1] < self.cfg.length:
                raise ValueError(
                    f"a prefix has 0..{self.cfg.length - 1} codes (got {prefix.shape[1]})"
                )
            inputs = torch.cat([inputs, prefix.long()], 1)  # (B, 1 + P)
        cache = KVCache(self.cfg, batch, capacity, self.head.weight)
        hidden = self(inputs, torch.arange(inputs.shape[1], device=inputs.device), cache=cache)
        cache.advance(inputs.shape[1])
        return cache, hidden[:, -1]


def dropout(p: float) -> nn.Module:
    """Dropout with rate p; the identity when p = 0 (one module call less per token)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def causal_after(cached: int, t: int, device: torch.device) -> Tensor:
    """Attention mask (t, cached + t): every new input sees the cached ones and the new ones
    up to itself."""
    mask = torch.ones(t, cached + t, dtype=torch.bool, device=device)
    mask[:, cached:] = torch.tril(mask[:, cached:])
    return mask


def _sincos(cfg: TransformerConfig) -> Tensor:
    if cfg.positions == "sinusoidal":
        return sincos_1d(cfg.dim, torch.arange(cfg.length)).float()  # (L, D)
    return sincos_2d(cfg.dim, *cfg.grid)  # (L, D): (row, column) of the predicted cell
