"""Choosing the next token from a prior's logits, and plain KV-cached decoding.

`TokenSampling` is the distribution the decoder samples from: logits / temperature, then
top-k (the k most likely tokens; Fan et al. 2018) and top-p (the nucleus: the smallest set of
most likely tokens whose probability reaches p; Holtzman et al. 2020, sec. 3.1), renormalised.
Temperature 0 is greedy decoding (the argmax). Every decoder of `genlab.tokens` (plain,
Medusa, speculative) samples from the same filtered distribution, so their outputs are
comparable token for token (greedy) or in distribution (sampling).

`plain_decode` is the reference: one cached forward pass per token, batched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlab.tokens.transformer import PriorTransformer

__all__ = ["DecodeStats", "TokenSampling", "plain_decode"]


@dataclass(frozen=True)
class TokenSampling:
    """temperature >= 0 (0: greedy), top_k >= 1 or None, 0 < top_p <= 1 or None."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1] (got {self.top_p})")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def filter(self, logits: Tensor) -> Tensor:
        """Logits (..., K) / temperature with the tokens outside top-k and top-p at -inf.

        top-k keeps every token whose logit is at least the k-th largest (ties kept); top-p
        keeps the most likely tokens while the probability of those before them is < p, so the
        token that reaches p is kept and the most likely one always is."""
        x = logits / self.temperature if self.temperature > 0 else logits.clone()
        if self.top_k is not None and self.top_k < x.shape[-1]:
            kth = torch.topk(x, self.top_k, dim=-1).values[..., -1:]  # (..., 1)
            x = x.masked_fill(x < kth, -torch.inf)
        if self.top_p is not None and self.top_p < 1:
            sorted_x, order = torch.sort(x, dim=-1, descending=True)  # (..., K)
            probs = torch.softmax(sorted_x, dim=-1)
            before = torch.cumsum(probs, dim=-1) - probs  # mass of the more likely tokens
            drop = torch.zeros_like(x, dtype=torch.bool).scatter(-1, order, before >= self.top_p)
            x = x.masked_fill(drop, -torch.inf)
        return x

    def probs(self, logits: Tensor) -> Tensor:
        """The distribution sampled from, (..., K); greedy: one-hot at the argmax."""
        if self.greedy:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits)
        return torch.softmax(self.filter(logits), dim=-1)

    def choose(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One token per row of logits (..., K) -> (...,) int64."""
        if self.greedy:
            return logits.argmax(-1)
        return draw(self.probs(logits), generator)


def draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One index per row of probs (..., K) -> (...,) int64."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


@dataclass
class DecodeStats:
    """What a decoder spent: prior forward passes and tokens produced (per sequence), and for
    speculative decoders the tokens accepted per forward."""

    forwards: int = 0
    tokens: int = 0
    accepted: list[int] = field(default_factory=list)

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / max(self.forwards, 1)

    def add(self, other: DecodeStats) -> None:
        self.forwards += other.forwards
        self.tokens += other.tokens
        self.accepted += other.accepted


def guided(logits: Tensor, guidance: float | None) -> Tensor:
    """Classifier-free guidance on a doubled batch [conditional; unconditional] of logits:
    log p_u + w (log p_c - log p_u) (Ho & Salimans 2022, eq. 6 in log-probabilities)."""
    if guidance is None:
        return logits
    cond, uncond = torch.log_softmax(logits, -1).chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def plain_decode(
    net: PriorTransformer,
    n: int,
    labels: Tensor | None = None,
    *,
    prefix: Tensor | None = None,
    sampling: TokenSampling = TokenSampling(),
    guidance: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, DecodeStats]:
    """n code sequences (n, L) that start with `prefix` (n, P) if given: one pass over the
    start token and the prefix, then one cached forward pass per token (L - P passes).

    `guidance` w (needs `labels` and a model trained with label dropout) runs the conditional
    and the null start token side by side and samples from the guided logits."""
    length = net.cfg.length
    rows = 2 * n if guidance is not None else n
    if guidance is not None:
        labels = torch.cat([labels, torch.full_like(labels, net.cfg.num_classes)])  # type: ignore[arg-type]
        prefix = None if prefix is None else prefix.repeat(2, 1)
    cache, hidden = net.prefill(labels, prefix, rows, length)  # (rows, D)
    done = 0 if prefix is None else prefix.shape[1]
    codes = torch.empty(n, length, dtype=torch.long, device=hidden.device)
    if prefix is not None:
        codes[:, :done] = prefix[:n]
    for i in range(done, length):
        if i > done:
            token = codes[:, i - 1 : i].repeat(rows // n, 1)  # (rows, 1)
            hidden = net(token, torch.tensor([i], device=token.device), cache=cache)[:, -1]
            cache.advance(1)
        codes[:, i] = sampling.choose(guided(net.logits(hidden), guidance), generator)
    return codes, DecodeStats(forwards=length - done, tokens=length - done)
