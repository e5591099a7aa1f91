"""Exact speculative sampling: the acceptance rule and residual give exactly the target
distribution (computed, not sampled), and whole sequences drafted by Medusa heads follow the
exact distribution of the prior, with and without temperature and filters."""

from __future__ import annotations

import pytest
import torch
from tokens.test_sampling import assert_matches, exact_probs
from tokens.tiny import tiny_heads, tiny_net

from genlab.tokens.sampling import TokenSampling, plain_decode
from genlab.tokens.speculative import acceptance, residual, speculative_decode


def _output_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(y) of one speculative step, exactly: draft y ~ q accepted with probability
    acceptance(p, q, y), or a rejection (probability 1 - sum_x q(x) a(x)) and y ~ residual."""
    vocab = torch.arange(p.shape[-1])
    accept = acceptance(p.expand(len(vocab), -1), q.expand(len(vocab), -1), vocab)  # (V,)
    rejected = 1 - (q * accept).sum()
    return q * accept + rejected * residual(p, q)


@pytest.mark.parametrize("seed", range(5))
def test_acceptance_rule_preserves_the_target_exactly(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(3 * torch.randn(6, generator=g, dtype=torch.float64), 0)
    q = torch.softmax(3 * torch.randn(6, generator=g, dtype=torch.float64), 0)
    p[1], q[4] = 0.0, 0.0  # tokens the target never draws, the draft never proposes
    p, q = p / p.sum(), q / q.sum()
    assert torch.allclose(_output_distribution(p, q), p, atol=1e-15, rtol=0)
    assert torch.allclose(_output_distribution(p, p), p, atol=1e-15, rtol=0)  # no rejection
    one_hot = torch.nn.functional.one_hot(torch.tensor(2), 6).double()  # greedy target
    assert torch.allclose(_output_distribution(one_hot, q), one_hot, atol=1e-15, rtol=0)


def test_acceptance_and_residual_by_hand() -> None:
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.6, 0.2], dtype=torch.float64)
    assert acceptance(p, q, torch.tensor(1)).item() == pytest.approx(0.5)
    assert acceptance(p, q, torch.tensor(0)).item() == 1.0
    assert residual(p, q).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("sampling", "path"),
    [(TokenSampling(), False), (TokenSampling(0.7, top_k=2), False), (TokenSampling(), True)],
)
def test_speculative_sequences_follow_the_prior_exactly(
    sampling: TokenSampling, path: bool
) -> None:
    """With heads that read the path, each draft comes from its head after the drafts
    before it, and the samples still follow the prior exactly."""
    net = tiny_net(vocab=3, grid=(1, 3), sharpen=5.0, depth=1)  # rarest sequence: p = 0.006
    heads = tiny_heads(net, 2, path=path)
    seqs, exact = exact_probs(net, sampling, label=0)
    g = torch.Generator().manual_seed(0)
    rows, accepted = [], []
    for _ in range(600):
        codes, stats = speculative_decode(
            net, heads, torch.tensor(0), sampling=sampling, generator=g
        )
        rows.append(codes)
        accepted += stats.accepted
    assert_matches(torch.stack(rows), seqs, exact)
    assert max(accepted) > 1  # drafts were accepted, so the test exercises the rule


def test_greedy_speculative_equals_greedy_decoding() -> None:
    net = tiny_net(grid=(3, 4), sharpen=10.0)
    heads = tiny_heads(net)
    greedy = TokenSampling(0.0)
    for label in range(2):
        plain, _ = plain_decode(net, 1, torch.tensor([label]), sampling=greedy)
        codes, _ = speculative_decode(net, heads, torch.tensor(label), sampling=greedy, draft=2)
        assert codes.tolist() == plain[0].tolist()
    with pytest.raises(ValueError, match="draft"):
        speculative_decode(net, heads, None, draft=4)
