"""Choosing tokens: temperature, top-k and top-p against hand computations; plain decoding
against brute force (greedy) and against the exact distribution of a small prior
(sampling, with and without filters); classifier-free guidance of logits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare
from tokens.tiny import tiny_net

from genlab.tokens.sampling import TokenSampling, guided, plain_decode

P = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
LOGITS = torch.log(P)


def test_temperature_scales_the_logits() -> None:
    got = TokenSampling(2.0).probs(LOGITS)
    root = P.sqrt()
    assert torch.allclose(got, root / root.sum(), atol=1e-15)


NUCLEI = [(0.3, 1), (0.5, 1), (0.6, 2), (0.75, 2), (0.76, 3), (0.89, 3), (0.91, 4), (1.0, 4)]


@pytest.mark.parametrize(("top_p", "kept"), NUCLEI)
def test_top_p_keeps_the_smallest_nucleus_reaching_p(top_p: float, kept: int) -> None:
    # cumulative mass before each token: 0, 0.5, 0.75, 0.9 -> kept while it is < p
    # (0.9 itself is not exact in binary: the boundary there is left untested)
    got = TokenSampling(top_p=top_p).probs(LOGITS)
    assert torch.allclose(
        got,
        torch.cat([P[:kept] / P[:kept].sum(), torch.zeros(4 - kept, dtype=torch.float64)]),
        atol=1e-15,
    )


def test_top_k_keeps_the_k_likeliest_and_their_ties() -> None:
    got = TokenSampling(top_k=2).probs(LOGITS)
    assert torch.allclose(got, torch.tensor([2 / 3, 1 / 3, 0, 0], dtype=torch.float64))
    tied = torch.log(torch.tensor([0.4, 0.2, 0.2, 0.2], dtype=torch.float64))
    assert torch.allclose(TokenSampling(top_k=2).probs(tied), torch.softmax(tied, 0))
    both = TokenSampling(0.5, top_k=3, top_p=0.8).probs(LOGITS)  # p^2: .25 .0625 .0225
    assert torch.allclose(both, torch.tensor([0.25, 0.0625, 0, 0], dtype=torch.float64) / 0.3125)


def test_greedy_is_the_argmax_and_bad_options_are_refused() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert TokenSampling(0.0).choose(logits).tolist() == [1, 0]
    assert TokenSampling(0.0).probs(logits).tolist() == [[0, 1, 0], [1, 0, 0]]
    for bad in ({"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TokenSampling(**bad)


def test_guidance_mixes_log_probabilities() -> None:
    cond = torch.tensor([[0.7, 0.2, 0.1]]).log()
    uncond = torch.tensor([[0.2, 0.3, 0.5]]).log()
    got = guided(torch.cat([cond + 3.0, uncond - 1.0]), 2.0)  # shifts cancel in softmax
    expected = torch.tensor([[0.7**2 / 0.2, 0.2**2 / 0.3, 0.1**2 / 0.5]])
    assert torch.allclose(torch.softmax(got, -1), expected / expected.sum(), atol=1e-6)


def test_greedy_plain_decoding_is_the_argmax_chain() -> None:
    net = tiny_net()
    labels = torch.tensor([0, 1])
    codes, stats = plain_decode(net, 2, labels, sampling=TokenSampling(0.0))
    assert stats.forwards == 6 and stats.tokens == 6
    for row in range(2):
        seq: list[int] = []
        for _ in range(6):  # brute force: an uncached pass over the sequence so far
            padded = torch.tensor([[*seq, 0]])
            logits = net.logits(net.teacher_forced(padded, labels[row : row + 1]))
            seq.append(int(logits[0, len(seq)].argmax()))
        assert codes[row].tolist() == seq


def exact_probs(
    net, sampling: TokenSampling, label: int | None = None
) -> tuple[list, torch.Tensor]:
    """Every code sequence of a small prior and its exact probability when each code is drawn
    from `sampling`'s distribution of the prior's conditional."""
    seqs = list(itertools.product(range(net.cfg.vocab), repeat=net.cfg.length))
    codes = torch.tensor(seqs)  # (S, L)
    labels = None if label is None else torch.full((len(seqs),), label)
    probs = sampling.probs(net.logits(net.teacher_forced(codes, labels)))  # (S, L, K)
    return seqs, probs.gather(2, codes[..., None]).squeeze(2).prod(1)  # (S,)


def assert_matches(samples: torch.Tensor, seqs: list, exact: torch.Tensor) -> None:
    """Chi-square goodness of fit of sequences (N, L) to the exact probabilities; fixed
    seeds, so the test is deterministic (a failure means a real mismatch, p < 1e-3)."""
    index = {s: i for i, s in enumerate(seqs)}
    counts = torch.bincount(
        torch.tensor([index[tuple(s)] for s in samples.tolist()]), minlength=len(seqs)
    ).double()
    keep = exact > 0
    assert counts[~keep].sum() == 0  # never a sequence the filters exclude
    expected = exact[keep] * samples.shape[0]
    assert float(chisquare(counts[keep], expected / expected.sum() * counts.sum()).pvalue) > 1e-3


@pytest.mark.parametrize(
    "sampling", [TokenSampling(), TokenSampling(0.7, top_k=2), TokenSampling(1.3, top_p=0.8)]
)
def test_plain_sampling_draws_the_exact_sequence_distribution(sampling: TokenSampling) -> None:
    net = tiny_net(vocab=3, grid=(1, 3), sharpen=15.0)
    seqs, exact = exact_probs(net, sampling, label=1)
    assert math.isclose(float(exact.sum()), 1.0, abs_tol=1e-12)
    g = torch.Generator().manual_seed(0)
    samples, _ = plain_decode(
        net, 4000, torch.ones(4000, dtype=torch.long), sampling=sampling, generator=g
    )
    assert_matches(samples, seqs, exact)
