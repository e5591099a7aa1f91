"""Measurements of a token prior on held-out images: bits per token of its codes and how
often each Medusa head's top-r tokens hold the right one."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.tokens.prior import TokenPrior, head_hits

__all__ = ["head_accuracy", "prior_metrics"]


@torch.no_grad()
def head_accuracy(
    model: TokenPrior, codes: Tensor, labels: Tensor | None = None, *, ranks: int = 10
) -> tuple[Tensor, Tensor]:
    """Rank-r hit rates (K, ranks) of the heads on teacher-forced code sequences (B, L):
    against the data's codes, and against the prior's own argmax (what greedy verification
    accepts; the estimate `Tree.sparse` builds trees from). Top-r accuracy is the cumulative
    sum over ranks."""
    assert model.heads is not None, "the model has no Medusa heads"
    hidden = model.net.teacher_forced(codes, labels)  # (B, L, D)
    best = model.net.logits(hidden).argmax(-1)  # (B, L)
    out = model.heads(hidden, codes)  # (B, L, K, V); row i's root is z_i
    ranks = min(ranks, out.shape[-1])
    data, prior = [], []
    for k in range(1, model.heads.n_heads + 1):
        pred = out[:, :-k, k - 1]  # (B, L - k, V)
        data.append(head_hits(pred, codes[:, k:], ranks))
        prior.append(head_hits(pred, best[:, k:], ranks))
    return torch.stack(data), torch.stack(prior)


@torch.no_grad()
def prior_metrics(model: TokenPrior, x: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """bits_per_token of the prior on images x (N, C, H, W) and, with Medusa heads, each head's
    top-1 / top-5 accuracy against the data (`head<k>_top1`, ...) and the top-1 agreement with
    the prior's argmax (`head<k>_top1_prior`)."""
    model.eval()
    codes = model.encode(x)  # (N, L)
    lp = model.code_log_prob(codes, labels)  # (N,)
    out = {"bits_per_token": float(-lp.mean() / (codes.shape[1] * math.log(2)))}
    if model.heads is None:
        return out
    data, prior = head_accuracy(model, codes, labels)
    top = torch.cumsum(data, 1)  # (K, R): top-r accuracy
    for k in range(data.shape[0]):
        out[f"head{k + 1}_top1"] = float(top[k, 0])
        out[f"head{k + 1}_top5"] = float(top[k, min(4, top.shape[1] - 1)])
        out[f"head{k + 1}_top1_prior"] = float(prior[k, 0])
    return out
