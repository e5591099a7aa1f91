"""The two-stage model: its likelihood bound against the exact probability of every image
of a small case (enumerated), the class mixture, the training losses by hand, a frozen prior
under Medusa-1 and the refusal of a tokenizer without trained weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tokens.standin import PoolTokenizer

from genlab.errors import DataError
from genlab.tokens.prior import TokenPrior, head_hits
from genlab.tokens.transformer import TransformerConfig

LEVELS, PIXELS = 3, 5  # codes per pixel (pool 1) and pixel levels of 1 x 2 x 2 images


def small_prior(num_classes: int = 0, **kwargs) -> TokenPrior:
    torch.manual_seed(0)
    tokenizer = PoolTokenizer((1, 2, 2), LEVELS, 1, PIXELS).double()
    cfg = TransformerConfig(
        vocab=LEVELS, grid=(2, 2), num_classes=num_classes, dim=16, depth=1, heads=2
    )
    prior = TokenPrior(tokenizer, cfg, **kwargs).double().eval()
    with torch.no_grad():
        prior.net.head.weight.mul_(30.0)  # conditionals far from uniform
    return prior


def _all(values: int, n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(values), repeat=n)))


@torch.no_grad()
def test_two_stage_bound_is_below_the_exact_log_probability() -> None:
    prior = small_prior()
    codes = _all(LEVELS, 4)  # (81, 4): every code grid
    images = (_all(PIXELS, 4).double() / (PIXELS - 1) * 2 - 1).view(-1, 1, 2, 2)  # (625, ...)
    log_pz = prior.code_log_prob(codes)  # (81,)
    assert math.isclose(float(log_pz.exp().sum()), 1.0, abs_tol=1e-12)
    grids = codes.view(-1, 2, 2)
    # ln p(x | z) for every image and code grid: (625, 81)
    cond = torch.stack(
        [prior.tokenizer.decoder_log_prob(images, g.expand(625, 2, 2)) for g in grids], 1
    )
    exact = torch.logsumexp(cond + log_pz, 1)  # ln P(x) = ln sum_z p(x | z) p(z)
    assert math.isclose(float(exact.exp().sum()), 1.0, abs_tol=1e-12)  # a distribution
    bound = prior.log_prob(images)
    assert bool((bound <= exact + 1e-12).all()) and bool((bound < exact - 1e-3).any())
    z = prior.encode(images)  # the bound is the term of the encoder's own code grid
    index = (z * LEVELS ** torch.arange(3, -1, -1)).sum(1)
    assert torch.allclose(bound, cond[torch.arange(625), index] + log_pz[index], atol=1e-12)


@torch.no_grad()
def test_unlabelled_likelihood_of_a_conditional_prior_mixes_its_classes() -> None:
    prior = small_prior(num_classes=3)
    codes = _all(LEVELS, 4)
    per_class = torch.stack([prior.code_log_prob(codes, torch.full((81,), y)) for y in range(3)])
    mixed = prior.code_log_prob(codes)
    assert torch.allclose(mixed, torch.logsumexp(per_class, 0) - math.log(3), atol=1e-12)
    assert math.isclose(float(mixed.exp().sum()), 1.0, abs_tol=1e-12)


def test_loss_is_the_code_nll_and_the_weighted_head_losses() -> None:
    prior = small_prior(num_classes=2, medusa_heads=2, head_weight=0.5, head_decay=0.8)
    x = (_all(PIXELS, 4)[::97].double() / (PIXELS - 1) * 2 - 1).view(-1, 1, 2, 2)  # (7, ...)
    labels = torch.arange(7) % 2
    with torch.no_grad():
        prior.heads.res_weight.normal_(std=0.3)
    codes = prior.encode(x)
    hidden = prior.net.teacher_forced(codes, labels)  # (7, 4, D)
    logp = torch.log_softmax(prior.net.logits(hidden), -1)
    heads = torch.log_softmax(prior.heads(hidden), -1)  # (7, 4, 2, K)
    expected = torch.zeros(7, dtype=torch.float64)
    for b, i in itertools.product(range(7), range(4)):
        expected[b] -= logp[b, i, codes[b, i]]
        for k in (1, 2):  # head k at i predicts code i + k
            if i + k < 4:
                expected[b] -= 0.5 * 0.8**k * heads[b, i, k - 1, codes[b, i + k]]
    assert torch.allclose(prior.loss(x, labels), expected, atol=1e-10)
    assert torch.allclose(
        -prior.code_log_prob(codes, labels),
        -logp.gather(2, codes[..., None]).squeeze(2).sum(1),
        atol=1e-12,
    )


def test_medusa1_trains_the_heads_on_a_frozen_prior() -> None:
    prior = small_prior(medusa_heads=2, freeze_prior=True, head_targets="prior").train()
    assert not prior.net.training and not prior.tokenizer.training
    trainable = {n for n, p in prior.named_parameters() if p.requires_grad}
    assert trainable == {"heads.res_weight", "heads.res_bias", "heads.proj"}
    x = (_all(PIXELS, 4)[::50].double() / (PIXELS - 1) * 2 - 1).view(-1, 1, 2, 2)
    loss = prior.loss(x)
    loss.mean().backward()
    assert all(p.grad is None for n, p in prior.named_parameters() if n not in trainable)
    # the running accuracy starts as the first batch's: rank-r hits against the argmax
    hidden = prior.net.teacher_forced(prior.encode(x), None)
    best = prior.net.logits(hidden).argmax(-1)
    hits = head_hits(prior.heads(hidden)[:, :-1, 0], best[:, 1:], LEVELS)
    assert torch.allclose(prior.head_accuracy[0], hits.to(prior.head_accuracy))
    assert int(prior.accuracy_updates) == 1


def test_a_prior_without_trained_tokenizer_weights_refuses_to_work() -> None:
    prior = small_prior(ready=False)
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    for call in (lambda: prior.log_prob(x), lambda: prior.sample(2), lambda: prior.loss(x)):
        with pytest.raises(DataError, match="no trained weights"):
            call()


def test_greedy_self_distillation_trains_heads_on_the_priors_own_continuations() -> None:
    prior = small_prior(medusa_heads=2, freeze_prior=True, head_targets="greedy").train()
    x = (_all(PIXELS, 4)[::50].double() / (PIXELS - 1) * 2 - 1).view(-1, 1, 2, 2)  # (13, ...)
    torch.manual_seed(3)
    p = int(torch.randint(4, ()))  # the prefix length the loss will draw
    torch.manual_seed(3)
    loss = prior.loss(x)
    codes = prior.encode(x)
    seq = codes[:, :p].tolist()  # brute force: extend each prefix by the prior's argmax
    for row in seq:
        while len(row) < 4:
            logits = prior.net.logits(prior.net.teacher_forced(torch.tensor([row + [0]]), None))
            row.append(int(logits[0, len(row)].argmax()))
    seq = torch.tensor(seq)
    heads = torch.log_softmax(prior.heads(prior.net.teacher_forced(seq, None)), -1)
    expected = -sum(  # the heads learn the continuation: targets at positions >= p
        0.8**k * heads[:, i, k - 1].gather(1, seq[:, i + k, None])[:, 0]
        for k in (1, 2)
        for i in range(4 - k)
        if i + k >= p
    )
    assert torch.allclose(loss, expected, atol=1e-10)
