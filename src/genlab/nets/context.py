"""A conditioning sequence for cross-attention: token vectors, their key padding mask and a
pooled vector, as one value that travels in the single `cond` argument of a network.

Text encoders produce sequences of different lengths; a batch pads them to the longest and
marks the real tokens in `mask`. Cross-attention then gives padded keys zero weight
(softmax over the real tokens only, Vaswani et al. 2017, sec. 3.2.3 "masking out ... illegal
connections"), so what sits at a padded position never changes the output. The pooled vector
(one per example, e.g. the mean of the token states, Reimers & Gurevych 2019, sec. 3) is the
alternative conditioning for adaptive normalisation (adaLN, Peebles & Xie 2023, sec. 3.2).

A `Context` concatenates with another of a different length (classifier-free guidance runs
both branches in one batch) and broadcasts a single row over a batch (one negative prompt
for every sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ConditionedBackbone", "Context", "unpack_condition"]


@dataclass(frozen=True)
class Context:
    """tokens (B, L, D) float, mask (B, L) bool (True at real tokens, at least one per row),
    pooled (B, P) float."""

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def __post_init__(self) -> None:
        t, m, p = self.tokens, self.mask, self.pooled
        if t.ndim != 3 or m.shape != t.shape[:2] or p.ndim != 2 or p.shape[0] != t.shape[0]:
            raise ValueError(f"a context needs tokens (B, L, D), mask (B, L) and pooled (B, P); "
                             f"got {list(t.shape)}, {list(m.shape)}, {list(p.shape)}")  # fmt: skip
        if m.dtype != torch.bool:
            raise ValueError(f"the context mask must be bool (True at real tokens), got {m.dtype}")
        if m.numel() and not torch.compiler.is_compiling() and not bool(m.any(1).all()):
            raise ValueError("every context row needs at least one real token (mask all False)")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """(B,): the batch, as a label tensor's shape would give it."""
        return (len(self),)

    def __getitem__(self, index: Any) -> Context:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Context(self.tokens[index], self.mask[index], self.pooled[index])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Context:
        """On `device`, float parts in `dtype` (the mask stays bool)."""
        return Context(self.tokens.to(device, dtype), self.mask.to(device),
                       self.pooled.to(device, dtype))  # fmt: skip

    def padded(self, length: int) -> Context:
        """The same context with padding up to `length` tokens (zeros, mask False)."""
        extra = length - self.tokens.shape[1]
        if extra < 0:
            raise ValueError(f"cannot pad {self.tokens.shape[1]} tokens to {length}")
        if extra == 0:
            return self
        tokens = torch.nn.functional.pad(self.tokens, (0, 0, 0, extra))  # (B, length, D)
        mask = torch.nn.functional.pad(self.mask, (0, extra), value=False)  # (B, length)
        return Context(tokens, mask, self.pooled)

    def trimmed(self) -> Context:
        """The same context without the padding columns that no row uses."""
        length = int(self.mask.sum(1).max())
        return Context(self.tokens[:, :length], self.mask[:, :length], self.pooled)

    @staticmethod
    def cat(contexts: Sequence[Context]) -> Context:
        """Contexts stacked along the batch, each padded to the longest."""
        length = max(c.tokens.shape[1] for c in contexts)
        parts = [c.padded(length) for c in contexts]
        return Context(torch.cat([c.tokens for c in parts]), torch.cat([c.mask for c in parts]),
                       torch.cat([c.pooled for c in parts]))  # fmt: skip

    def expand(self, n: int) -> Context:
        """A batch of n: itself if it has n rows, its one row repeated (a view) if it has 1."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"a context of {len(self)} rows cannot serve a batch of {n}")
        return Context(self.tokens.expand(n, -1, -1), self.mask.expand(n, -1),
                       self.pooled.expand(n, -1))  # fmt: skip


def unpack_condition(
    cond: Tensor | Context | None,
    context: Tensor | None,
    context_mask: Tensor | None,
    pooled: Tensor | None,
    *,
    uses_tokens: bool,
    uses_pooled: bool,
    name: str,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """(labels, context, context_mask, pooled) for network `name` from its `cond` argument
    (class labels, a `Context`, or None) and the explicit keyword inputs. Of a `Context` the
    network takes what it was built for: the tokens with their mask when it cross-attends,
    the pooled vector when it has a pooled embedding."""
    if isinstance(cond, Context):
        if context is not None or context_mask is not None or pooled is not None:
            raise ValueError(f"{name}: pass a Context as cond or context/pooled tensors, not both")
        if not (uses_tokens or uses_pooled):
            raise ValueError(f"{name}: a text context given to a {name} built without "
                             "context_dim or pooled_dim")  # fmt: skip
        if uses_tokens:
            context, context_mask = cond.tokens, cond.mask
        pooled = cond.pooled if uses_pooled else None
        cond = None
    if context is not None and not uses_tokens:
        raise ValueError(f"context given to a {name} built without context_dim")
    if pooled is not None and not uses_pooled:
        raise ValueError(f"pooled vector given to a {name} built without pooled_dim")
    if context_mask is not None and context is None:
        raise ValueError(f"{name}: context_mask given without a context")
    return cond, context, context_mask, pooled


class ConditionedBackbone:
    """What the image backbones (UNet, DiT) share about conditions: reading `cond` and the
    keyword inputs against their config's `context_dim` / `pooled_dim`, and the conditioning
    vector time + class + pooled-vector embedding (Dhariwal & Nichol 2021, sec. 3; the
    pooled text vector as in Podell et al. 2023, sec. 2.1). A mixin of `nn.Module`s that
    define `config`, `time_embed`, `label_embed` and `pooled_embed`."""

    config: Any
    time_embed: nn.Module
    label_embed: nn.Module | None
    pooled_embed: nn.Module | None

    def conditions(
        self,
        cond: Tensor | Context | None,
        context: Tensor | None,
        context_mask: Tensor | None,
        pooled: Tensor | None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        """(labels, context, context_mask, pooled), see `unpack_condition`."""
        return unpack_condition(cond, context, context_mask, pooled, name=type(self).__name__,
                                uses_tokens=self.config.context_dim is not None,
                                uses_pooled=self.config.pooled_dim is not None)  # fmt: skip

    def embed(self, t: Tensor, labels: Tensor | None, pooled: Tensor | None = None) -> Tensor:
        """The time embedding plus the class embedding of `labels` plus the embedded `pooled`
        vector, each when given. t: (B,) -> (B, E)."""
        emb = self.time_embed(t)
        if labels is not None:
            if self.label_embed is None:
                raise ValueError(f"class labels given to a {type(self).__name__} built without "
                                 "num_classes")  # fmt: skip
            emb = emb + self.label_embed(labels)
        if pooled is not None and self.pooled_embed is not None:
            emb = emb + self.pooled_embed(pooled)
        return emb
