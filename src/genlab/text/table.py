"""Caption embeddings as a table, and the condition a text model trains on.

`CaptionTable` holds the embeddings of K distinct captions back to back (no padding is
stored: a caption of L tokens takes L rows) and caption groups: the captions one training
example may be shown (the phrasings of its digit; an image's own caption). A batch is
gathered from it into a padded `genlab.nets.context.Context` with its mask.

`Captions` is the per-example condition the trainer sees: the caption group of every
example and the shared table. It indexes and moves like a (N,) tensor (the trainer takes
`cond[idx]` per batch), is dropped to the empty caption (group 0) for classifier-free
guidance, and resolves to a `Context`: a caption drawn uniformly from each example's group
while training (from the global generator, which the trainer seeds per step), the group's
first caption otherwise, so validation losses are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.nets.context import Context
from genlab.text.encoder import TextEmbedding

__all__ = ["EMPTY_GROUP", "CaptionTable", "Captions"]

EMPTY_GROUP = 0  # group 0 of every caption table is the empty caption alone


class CaptionTable:
    """Embeddings of K captions and G groups of caption indices.

    tokens (T, D): the token states of every caption back to back; start, length (K,): where
    each caption's rows are; pooled (K, D); groups (G, M) caption indices (-1 pads a group
    shorter than M); sizes (G,)."""

    def __init__(
        self, embeddings: Sequence[TextEmbedding], groups: Sequence[Sequence[int]] | None = None
    ) -> None:
        if not embeddings:
            raise ValueError("a caption table needs at least one caption")
        lengths = torch.tensor([e.tokens.shape[0] for e in embeddings])  # (K,)
        self.tokens = torch.cat([e.tokens for e in embeddings])  # (T, D)
        self.pooled = torch.stack([e.pooled for e in embeddings])  # (K, D)
        self.length = lengths
        self.start = torch.cumsum(lengths, 0) - lengths  # (K,)
        groups = [[k] for k in range(len(embeddings))] if groups is None else groups
        if not groups or min(len(g) for g in groups) == 0:
            raise ValueError("every caption group needs at least one caption")
        width = max(len(g) for g in groups)
        self.groups = torch.tensor([list(g) + [-1] * (width - len(g)) for g in groups])  # (G, M)
        self.sizes = torch.tensor([len(g) for g in groups])  # (G,)
        if int(self.groups.max()) >= len(embeddings):
            raise ValueError(
                f"caption index {int(self.groups.max())} outside 0..{len(lengths) - 1}"
            )

    @property
    def num_groups(self) -> int:
        return self.groups.shape[0]

    def to(self, device: torch.device | str) -> CaptionTable:
        """The table on `device` (a shallow copy)."""
        moved = object.__new__(CaptionTable)
        for name, value in vars(self).items():
            setattr(moved, name, value.to(device))
        return moved

    def context(self, captions: Tensor) -> Context:
        """The padded batch of captions `captions` (B,): tokens (B, L, D) with L the longest
        of them (zeros at padding), mask (B, L), pooled (B, D)."""
        length = self.length[captions]  # (B,)
        pos = torch.arange(int(length.max()), device=captions.device)  # (L,)
        mask = pos[None, :] < length[:, None]  # (B, L)
        rows = (self.start[captions][:, None] + pos[None, :]).clamp_max(self.tokens.shape[0] - 1)
        tokens = self.tokens[rows] * mask[:, :, None].to(self.tokens.dtype)  # (B, L, D)
        return Context(tokens, mask, self.pooled[captions])

    def pick(self, groups: Tensor, random: bool) -> Tensor:
        """One caption of each group (B,): uniform over the group when `random` (global
        generator), else its first. -> caption indices (B,)."""
        if random:
            u = torch.rand(groups.shape[0], device=groups.device)  # (B,)
            j = (u * self.sizes[groups]).long().clamp_max(self.sizes[groups] - 1)
        else:
            j = torch.zeros_like(groups)
        return self.groups[groups, j]


@dataclass(frozen=True)
class Captions:
    """The caption group (N,) of every example over a shared `CaptionTable`: a condition
    that indexes like a tensor and resolves to a `Context` (see the module docstring)."""

    groups: Tensor
    table: CaptionTable

    def __post_init__(self) -> None:
        g = self.groups
        if g.ndim != 1 or g.dtype != torch.long:
            raise ValueError(f"caption groups must be a (N,) long tensor, got {g.dtype} "
                             f"{list(g.shape)}")  # fmt: skip
        if g.numel() and not 0 <= int(g.min()) <= int(g.max()) < self.table.num_groups:
            raise ValueError(f"caption groups must lie in 0..{self.table.num_groups - 1}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.groups.shape)

    def __len__(self) -> int:
        return self.groups.shape[0]

    def __getitem__(self, index: Any) -> Captions:
        return Captions(self.groups[index].reshape(-1), self.table)

    def to(self, device: torch.device | str) -> Captions:
        return Captions(self.groups.to(device), self.table.to(device))

    def dropped(self, mask: Tensor, null: int) -> Captions:
        """Examples under `mask` (B,) shown group `null` (the empty caption) instead."""
        return Captions(torch.where(mask, torch.full_like(self.groups, null), self.groups),
                        self.table)  # fmt: skip

    def resolve(self, training: bool) -> Context:
        """The batch's captions as a context: random members of the groups when training."""
        return self.table.context(self.table.pick(self.groups, random=training))
