"""Blocks shared by the image backbones: time and label embeddings, attention, adaLN modulation.

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`, which picks a
flash / memory-efficient kernel where the device has one (Vaswani et al. 2017, eq. 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from genlab.nets.mlp import sinusoidal_embedding

__all__ = [
    "Attention",
    "LabelEmbedding",
    "drop_labels",
    "TimeEmbedding",
    "VectorEmbedding",
    "maybe_checkpoint",
    "modulate",
    "norm_groups",
    "zero_",
]


def zero_(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to zero in place and return it: zero-init of a residual
    branch's last layer (Goyal et al. 2017; Dhariwal & Nichol 2021; Peebles & Xie 2023)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest number of GroupNorm groups <= `max_groups` that divides `channels`
    (Wu & He 2018 use 32)."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return groups


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Feature-wise affine modulation x * (1 + scale) + shift (FiLM, Perez et al. 2018; adaLN of
    Peebles & Xie 2023, sec. 3.2). x: (B, N, D), shift/scale: (B, D)."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def maybe_checkpoint(fn: Callable[..., Tensor], enabled: bool, *args: Tensor | None) -> Tensor:
    """Run `fn(*args)` under activation (gradient) checkpointing when `enabled` and grad is on:
    activations inside `fn` are recomputed in the backward pass (Chen et al. 2016)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the noise-conditioning scalar followed by a two-layer MLP
    (Ho et al. 2020, appendix B; Vaswani et al. 2017, sec. 3.5). t: (B,) -> (B, dim).

    `t` lives on a scale of about [0, 1000] (may be negative, e.g. 250 ln sigma)."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        if t.ndim == 0:
            t = t.reshape(1)
        emb = sinusoidal_embedding(t, self.freq_dim)  # (B, freq_dim), float32
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # (B, dim)


class LabelEmbedding(nn.Module):
    """A table of `num_classes + 1` vectors; index `num_classes` is the "null" label used by
    classifier-free guidance (Ho & Salimans 2022). Dropping labels is the model's job."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, labels: Tensor) -> Tensor:
        labels = labels.long()
        checked = labels.numel() and not torch.compiler.is_compiling()  # no graph break
        if checked and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ValueError(
                f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = null), "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        return self.table(labels)  # (B, dim)


class VectorEmbedding(nn.Module):
    """A conditioning vector (e.g. a pooled sentence embedding) mapped by a two-layer MLP to
    the width of the time embedding it is added to, like the class embedding of Dhariwal &
    Nichol (2021, sec. 3) and the pooled text vector of Podell et al. (2023, sec. 2.1).
    v: (B, in_dim) -> (B, dim)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, v: Tensor) -> Tensor:
        return self.mlp(v.to(self.mlp[0].weight.dtype))  # (B, dim)


def drop_labels(labels: Tensor, p: float, null: int) -> Tensor:
    """Labels (B,) each replaced by the `null` label with probability p, so that one network
    learns the conditional and the unconditional model (Ho & Salimans 2022, Alg. 1)."""
    drop = torch.rand(labels.shape[0], device=labels.device) < p  # (B,)
    return torch.where(drop, torch.full_like(labels, null), labels)


class Attention(nn.Module):
    """Multi-head (self- or cross-) attention softmax(QK^T / sqrt(d)) V (Vaswani et al. 2017,
    eq. 1) on token sequences. x: (B, N, dim), context: (B, L, context_dim) or None,
    mask: (B, L) bool or None -> (B, N, dim).

    With `context_dim` set, keys and values come from `context` (cross-attention, Rombach et
    al. 2022, eq. 2); otherwise from `x`. `mask` is the key padding mask (True at real keys):
    padded keys get weight zero, so whatever sits at a padded position changes nothing.
    `zero_out` zero-initialises the output projection so a residual branch starts as the
    identity."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int | None = None,
        zero_out: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.is_cross = context_dim is not None
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim if context_dim is not None else dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        if zero_out:
            zero_(self.out)

    def forward(
        self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        if self.is_cross and context is None:
            raise ValueError("cross-attention needs a context sequence (B, L, context_dim)")
        source = context if self.is_cross else x
        b, n, d = x.shape
        keep = None if mask is None else _key_mask(mask, b, source.shape[1])  # (B, 1, 1, L)
        h = self.num_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)  # (B, h, N, d/h)
        k, v = self.kv(source).view(b, source.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        if k.dtype != q.dtype:  # autocast may leave the context projection in another dtype
            k, v = k.to(q.dtype), v.to(q.dtype)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # The CPU flash-attention backward in bf16 ran ~10x slower than in fp32 (torch
            # 2.13, 1 thread, 4-64 tokens); the attention core is cheap, so run it in fp32.
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), keep)
            y = y.to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, keep)  # (B, h, N, d/h)
        return self.out(y.transpose(1, 2).reshape(b, n, d))  # (B, N, dim)


def _key_mask(mask: Tensor, batch: int, keys: int) -> Tensor:
    """A (B, L) bool key padding mask as the boolean `attn_mask` of scaled_dot_product_attention
    (True = attend), broadcast over heads and queries: (B, 1, 1, L)."""
    if mask.dtype != torch.bool or mask.shape != (batch, keys):
        raise ValueError(f"the key padding mask must be bool of shape ({batch}, {keys}), got "
                         f"{mask.dtype} {list(mask.shape)}")  # fmt: skip
    return mask[:, None, None, :]
