"""Exact speculative sampling with the Medusa heads as the draft (Leviathan et al. 2023, "Fast
Inference from Transformers via Speculative Decoding", algorithm 1; Chen et al. 2023,
"Accelerating Large Language Model Decoding with Speculative Sampling", algorithm 2).

A draft distribution q proposes x ~ q; the target p accepts it with probability
min(1, p(x) / q(x)) and otherwise draws a replacement from the residual
norm(max(0, p - q)). Then for every token y

    P(y) = q(y) min(1, p(y)/q(y)) + (1 - sum_x min(q(x), p(x))) (p(y) - q(y))^+ / Z = p(y),

since both terms add to min(p, q)(y) + (p - q)^+(y) = p(y) (Leviathan et al. appendix A.1).
Any q works, so the draft of the token k + 1 ahead is head k's distribution at the last
accepted hidden state: the heads draft a chain, the prior scores the whole chain in one
forward pass, and accepted tokens are kept up to the first rejection. The samples are then
distributed exactly as plain sampling from the prior (with the same temperature, top-k and
top-p), unlike Medusa's typical acceptance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.tokens.medusa import MedusaHeads, start_decoding, verify
from genlab.tokens.sampling import DecodeStats, TokenSampling, draw

__all__ = ["acceptance", "residual", "speculative_decode"]


def acceptance(p: Tensor, q: Tensor, x: Tensor) -> Tensor:
    """min(1, p(x) / q(x)) for draft tokens x (...,) of rows of p and q (..., V); 1 where
    q(x) = 0 (a token the draft never proposes)."""
    px = p.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (...,)
    qx = q.gather(-1, x.unsqueeze(-1)).squeeze(-1)
    return torch.where(qx > 0, px / qx.clamp_min(1e-300), 1.0).clamp(max=1.0)


def residual(p: Tensor, q: Tensor) -> Tensor:
    """norm(max(0, p - q)) (..., V): what a rejection draws from. Where p = q no draft is ever
    rejected; the row is then p itself."""
    r = torch.clamp(p - q, min=0.0)  # (..., V)
    mass = r.sum(-1, keepdim=True)
    return torch.where(mass > 0, r / mass.clamp_min(1e-30), p)


def _draft_path(
    heads: MedusaHeads,
    hidden: Tensor,
    root: int,
    d: int,
    sampling: TokenSampling,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """A chain of d drafts from heads that read the path: head k's distribution (d, V) given
    the k - 1 tokens drawn before, and the tokens (d,)."""
    assert heads.root_embed is not None and heads.path_embed is not None
    x = hidden + heads.root_embed.weight[root]
    qs, xs = [], []
    for k in range(1, d + 1):
        q = sampling.probs(heads.head(k, x))  # (V,)
        token = draw(q[None], generator)[0]
        qs.append(q)
        xs.append(token)
        if k < d:
            x = x + heads.path_embed[k - 1][token]
    return torch.stack(qs), torch.stack(xs)


def _chain(depth: int) -> Tensor:
    return torch.tril(torch.ones(depth, depth, dtype=torch.bool))


@torch.no_grad()
def speculative_decode(
    net: torch.nn.Module,
    heads: MedusaHeads,
    label: Tensor | None = None,
    *,
    prefix: Tensor | None = None,
    draft: int | None = None,
    sampling: TokenSampling = TokenSampling(),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, DecodeStats]:
    """One code sequence (L,) that starts with `prefix` (P,) if given, distributed exactly
    as plain sampling from the prior with `sampling`; the first `draft` heads (default:
    all) draft a chain per forward pass."""
    draft = heads.n_heads if draft is None else draft
    if not 1 <= draft <= heads.n_heads:
        raise ValueError(f"draft must lie in 1..{heads.n_heads} (got {draft})")
    length = net.cfg.length
    state = start_decoding(net, label, prefix, draft + 1)
    pending: int | None = None
    while len(state.codes) < length:
        root = (
            pending if pending is not None else int(draw(sampling.probs(state.logits), generator))
        )
        state.codes.append(root)
        left = length - len(state.codes)
        if left == 0:
            break
        d = min(draft, left)
        if heads.path_embed is None:
            q = sampling.probs(heads(state.hidden, root, d))  # (d, V): the drafts' distributions
            xs = draw(q, generator)  # (d,)
        else:  # each head drafts after the tokens drafted before it
            q, xs = _draft_path(heads, state.hidden, root, d, sampling, generator)
        tokens = torch.cat([torch.tensor([root]), xs])  # (d + 1,)
        hidden, logits = verify(net, state, tokens, torch.arange(d + 1), _chain(d + 1))
        p = sampling.probs(logits[:d])  # (d, V): the prior's distribution of each draft
        u = torch.rand(d, generator=generator)
        ok = torch.cumprod((u < acceptance(p, q, xs)).long(), 0)  # (d,)
        n = int(ok.sum())
        pending = int(draw(residual(p[n], q[n]), generator)) if n < d else None
        state.cache.keep(torch.arange(n + 1))
        state.codes += xs[:n].tolist()
        state.stats.accepted.append(n + 1)
        state.hidden, state.logits = hidden[n], logits[n]
    state.stats.tokens = length - (0 if prefix is None else prefix.shape[0])
    return torch.tensor(state.codes), state.stats
