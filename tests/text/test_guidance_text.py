"""Classifier-free guidance by prompt, on an exactly solvable case: the data given a prompt
is N(mu(prompt), s^2 I), so the denoiser is the posterior mean
D(x, sigma | prompt) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2), with mu read from the
prompt's context. Guidance at w = 0 / 1 is exactly the unconditional / conditional
denoiser, in between the linear combination; a negative prompt replaces the empty prompt;
both branches run in one call on contexts of different lengths."""

from __future__ import annotations

import torch
from text_helpers import random_context
from torch import Tensor

from genlab.diffusion.guidance import ClassifierFreeGuidance
from genlab.diffusion.model import Diffusion
from genlab.diffusion.presets import build_objective
from genlab.nets.context import Context
from genlab.text.table import Captions, CaptionTable

S2 = 0.25  # data variance per coordinate


class PromptGaussians:
    """The exact denoiser of N(mu, S2 I) where mu is the mean of the prompt's real tokens'
    first two features (so padding must not enter). Records the batches it is called on."""

    sigma_min, sigma_max = 0.01, 20.0

    def __init__(self) -> None:
        self.batches: list[int] = []

    @staticmethod
    def mean(ctx: Context) -> Tensor:
        w = ctx.mask.to(ctx.tokens.dtype)[:, :, None]  # (B, L, 1)
        return (ctx.tokens[:, :, :2] * w).sum(1) / w.sum(1)  # (B, 2)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Context) -> Tensor:
        self.batches.append(x.shape[0])
        s2 = sigma[:, None] ** 2
        return (S2 * x + s2 * self.mean(cond)) / (S2 + s2)


def _case() -> tuple[PromptGaussians, Tensor, Tensor, Context, Context, Context]:
    g = torch.Generator().manual_seed(0)
    x, sigma = 2 * torch.randn(4, 2, generator=g), torch.tensor([0.05, 0.5, 2.0, 10.0])
    prompts = random_context([5, 3, 4, 2], seed=1)
    empty = random_context([2], seed=2)  # "[CLS] [SEP]"
    negative = random_context([6], seed=3)
    return PromptGaussians(), x, sigma, prompts, empty, negative


def test_guidance_endpoints_and_combination() -> None:
    d, x, sigma, prompts, empty, _ = _case()
    d_c, d_u = d(x, sigma, prompts), d(x, sigma, empty.expand(4))
    assert torch.equal(ClassifierFreeGuidance(d, 1.0, uncond=empty)(x, sigma, prompts), d_c)
    assert torch.equal(ClassifierFreeGuidance(d, 0.0, uncond=empty)(x, sigma, prompts), d_u)
    d.batches.clear()
    guided = ClassifierFreeGuidance(d, 3.0, uncond=empty)(x, sigma, prompts)
    torch.testing.assert_close(guided, d_u + 3.0 * (d_c - d_u), rtol=1e-6, atol=1e-6)
    assert d.batches == [8]  # both branches in one call, prompts (L 5) and empty (L 2) padded
    # the guided denoiser is that of N(mu_u + w (mu_c - mu_u), S2 I): linear in mu
    mu = d.mean(empty.expand(4)) + 3.0 * (d.mean(prompts) - d.mean(empty.expand(4)))
    s2 = sigma[:, None] ** 2
    torch.testing.assert_close(guided, (S2 * x + s2 * mu) / (S2 + s2), rtol=1e-6, atol=1e-6)


def test_negative_prompt_replaces_the_empty_prompt() -> None:
    d, x, sigma, prompts, empty, negative = _case()
    d_neg = d(x, sigma, negative.expand(4))
    assert torch.equal(ClassifierFreeGuidance(d, 0.0, uncond=negative)(x, sigma, prompts), d_neg)
    guided = ClassifierFreeGuidance(d, 2.0, uncond=negative)(x, sigma, prompts)
    torch.testing.assert_close(guided, d_neg + 2.0 * (d(x, sigma, prompts) - d_neg),
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    with_empty = ClassifierFreeGuidance(d, 2.0, uncond=empty)(x, sigma, prompts)
    assert not torch.allclose(guided, with_empty)


class Recorder(torch.nn.Module):
    """A network that records the contexts it sees and outputs zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[Context] = []

    def forward(self, x: Tensor, t: Tensor, cond: Context | None = None) -> Tensor:
        assert isinstance(cond, Context)
        self.seen.append(cond)
        return x * self.w


def test_caption_dropout_and_sampling_with_prompts() -> None:
    """Diffusion.loss drops captions to the empty caption (group 0) and shows each other
    example a caption of its group; Diffusion.sample guides with a context's uncond."""
    from text_helpers import fake_embeddings

    table = CaptionTable(fake_embeddings([2, 4, 3, 5]), [[0], [1, 2], [3]])
    net = Recorder()
    model = Diffusion(net, build_objective("ddpm"), (2,), label_dropout=0.5, null_label=0)
    torch.manual_seed(0)
    groups = torch.tensor([1, 2] * 200)
    model.train()
    model.loss(torch.randn(400, 2), Captions(groups, table))
    seen = net.seen[-1]
    first = seen.tokens[:, 0, 0]  # a caption is told apart by its first token
    starts = {k: float(table.tokens[table.start[k], 0]) for k in range(4)}
    empty = first == starts[0]
    assert 150 < int(empty.sum()) < 250  # dropped with probability 1/2
    kept1 = first[~empty & (groups == 1)]
    assert set(kept1.tolist()) == {starts[1], starts[2]}  # both members of group 1 drawn
    assert set(first[~empty & (groups == 2)].tolist()) == {starts[3]}
    model.eval()
    model.loss(torch.randn(4, 2), Captions(torch.tensor([1, 1, 2, 2]), table))
    assert net.seen[-1].tokens[:, 0, 0].tolist() == [starts[1]] * 2 + [starts[3]] * 2
    net.seen.clear()
    prompts = random_context([3, 1], dim=table.tokens.shape[1])
    model.sample(2, prompts, guidance=2.0, uncond=table.context(torch.tensor([0])), nfe=4,
                 sampler="euler")  # fmt: skip
    assert len(net.seen) == 4 and all(len(c) == 4 for c in net.seen)  # one 2B call a step
