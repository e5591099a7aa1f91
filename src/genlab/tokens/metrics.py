"""What a tokenizer is judged by, measured over a whole split.

- `code_statistics`: codebook usage = distinct codes over the split / K, the perplexity
  exp(H) of the split's code histogram (H in nats), and the number of dead codes (never
  used on the split). Counted over the whole split, not per batch: a per-batch perplexity
  is bounded by the batch's number of tokens and so depends on the batch size.
- `encode_all` / `reconstruct_all`: codes and reconstructions of a split in batches.
- `tokenizer_metrics`: the numbers `genlab eval` reports for a tokenizer run: test
  reconstruction MSE, the code statistics, the decoder's bits/dim -ln p(x | z(x)) / (D ln 2),
  and the two-stage bound with the unigram prior of `sample` (what a learned prior must
  beat); the family adds the Frechet distance of the reconstructions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from genlab.density import LN2

if TYPE_CHECKING:
    from genlab.tokens.autoencoder import VQAutoencoder

__all__ = [
    "CodeStats",
    "code_histogram",
    "code_statistics",
    "encode_all",
    "reconstruct_all",
    "tokenizer_metrics",
]

BATCH = 256


@dataclass(frozen=True)
class CodeStats:
    """Usage (distinct codes / K), perplexity exp(H) of the histogram, unused codes."""

    usage: float
    perplexity: float
    dead: int


def code_histogram(codes: Tensor, k: int) -> Tensor:
    """Counts of each code 0..k-1 over all positions of `codes` (any shape): (k,) int64."""
    return torch.bincount(codes.flatten().long(), minlength=k)


def code_statistics(codes: Tensor, k: int) -> CodeStats:
    """`CodeStats` of every code in `codes` (N, h, w) (a whole split) for a codebook of k."""
    counts = code_histogram(codes, k).double()  # (k,)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * p.log()).sum())
    used = int((counts > 0).sum())
    return CodeStats(usage=used / k, perplexity=math.exp(entropy), dead=k - used)


@torch.no_grad()
def encode_all(model: VQAutoencoder, x: Tensor, batch_size: int = BATCH) -> Tensor:
    """Codes (N, h, w) of images x (N, C, H, W), in batches."""
    batches = range(0, x.shape[0], batch_size)
    return torch.cat([model.encode(x[i : i + batch_size]) for i in batches])  # (N, h, w)


@torch.no_grad()
def reconstruct_all(
    model: VQAutoencoder, x: Tensor, batch_size: int = BATCH
) -> tuple[Tensor, Tensor, Tensor]:
    """(codes (N, h, w), reconstructions (N, C, H, W), ln p(x | codes) (N,)) of images x."""
    codes, recon, log_p = [], [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        c = model.encode(xb)  # (b, h, w)
        codes.append(c)
        recon.append(model.decode(c))
        log_p.append(model.decoder_log_prob(xb, c))
    return torch.cat(codes), torch.cat(recon), torch.cat(log_p)


def unigram_bits(codes: Tensor, probs: Tensor) -> Tensor:
    """-log2 of i.i.d. codes under the distribution `probs` (K,), per example: (N,)."""
    log_p = probs.double().clamp_min(1e-300).log()  # (K,)
    return -log_p[codes.flatten(1)].sum(1) / LN2


def tokenizer_metrics(model: VQAutoencoder, test: Tensor) -> tuple[dict[str, float], Tensor]:
    """The tokenizer's numbers on the test images (see the module docstring) and the
    reconstructions (N, C, H, W) they were measured on."""
    model.eval()
    codes, recon, log_p = reconstruct_all(model, test)
    stats = code_statistics(codes, model.codebook_size)
    dim = math.prod(test.shape[1:])
    decoder_bpd = float(-log_p.double().mean()) / (dim * LN2)
    code_bpd = float(unigram_bits(codes, model.code_distribution()).mean()) / dim
    return {
        "recon_mse": float((recon.double() - test.double()).square().mean()),
        "codebook_usage": stats.usage,
        "perplexity": stats.perplexity,
        "dead_codes": float(stats.dead),
        "codebook_size": float(model.codebook_size),
        "tokens": float(codes[0].numel()),
        "decoder_bpd": decoder_bpd,
        "unigram_bound_bpd": decoder_bpd + code_bpd,
    }, recon
