"""Key padding masks: masked cross-attention equals attention over the real tokens alone
(brute force, one example at a time), and whatever sits at a padded position changes no
output of the UNet or the DiT; the pooled vector conditions both networks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from text_helpers import DIM, random_context
from torch import nn

from genlab.nets.context import Context
from genlab.nets.dit import DiT, DiTConfig
from genlab.nets.layers import Attention
from genlab.nets.unet import UNet, UNetConfig

LENGTHS = [3, 1, 5]


def _unet(**kw: object) -> nn.Module:
    cfg = dict(in_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1,
               attention_levels=(0, 1), head_dim=8, context_dim=DIM, pooled_dim=DIM)  # fmt: skip
    return UNet(UNetConfig(**{**cfg, **kw}))  # type: ignore[arg-type]


def _dit(**kw: object) -> nn.Module:
    cfg = dict(in_channels=1, patch_size=2, hidden=32, depth=2, num_heads=4,
               context_dim=DIM, pooled_dim=DIM)  # fmt: skip
    return DiT(DiTConfig(**{**cfg, **kw}))  # type: ignore[arg-type]


NETS: dict[str, Callable[..., nn.Module]] = {"unet": _unet, "dit": _dit}


def _randomised(net: nn.Module) -> nn.Module:
    """Every zero-initialised weight moved off zero, so cross-attention reaches the output."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 1, 8, 8, generator=g), torch.tensor([10.0, 400.0, 900.0])


def test_masked_attention_is_attention_over_the_real_tokens() -> None:
    torch.manual_seed(0)
    attn = Attention(16, 4, context_dim=DIM).eval()
    x = torch.randn(3, 7, 16)
    ctx = random_context(LENGTHS)
    out = attn(x, ctx.tokens, ctx.mask)  # (3, 7, 16)
    for i, n in enumerate(LENGTHS):
        alone = attn(x[i : i + 1], ctx.tokens[i : i + 1, :n])  # no padding at all
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="key padding mask"):
        attn(x, ctx.tokens, ctx.mask[:, :2])


@pytest.mark.parametrize("name", sorted(NETS))
def test_padded_positions_change_nothing(name: str) -> None:
    net = _randomised(NETS[name]())
    x, t = _inputs()
    ctx = random_context(LENGTHS)
    base = net(x, t, ctx)
    noise = 100.0 * torch.randn_like(ctx.tokens) * (~ctx.mask)[:, :, None]  # padding only
    changed = Context(ctx.tokens + noise, ctx.mask, ctx.pooled)
    assert torch.equal(net(x, t, changed), base)
    longer = ctx.padded(9)  # more padding columns
    torch.testing.assert_close(net(x, t, longer), base, rtol=1e-5, atol=1e-6)
    real = Context(ctx.tokens.clone(), ctx.mask, ctx.pooled)
    real.tokens[0, 0] += 1.0  # a real token does matter
    assert not torch.allclose(net(x, t, real), base)
    kwargs = net(x, t, context=ctx.tokens, context_mask=ctx.mask, pooled=ctx.pooled)
    assert torch.equal(kwargs, base)  # the Context is the same as the keyword inputs


@pytest.mark.parametrize("name", sorted(NETS))
def test_pooled_vector_conditions_the_network(name: str) -> None:
    x, t = _inputs()
    ctx = random_context(LENGTHS)
    pooled_only = _randomised(NETS[name](context_dim=None))
    base = pooled_only(x, t, ctx)
    other_tokens = Context(torch.randn_like(ctx.tokens), ctx.mask, ctx.pooled)
    assert torch.equal(pooled_only(x, t, other_tokens), base)  # tokens unused
    assert not torch.allclose(pooled_only(x, t, Context(ctx.tokens, ctx.mask, -ctx.pooled)), base)
    tokens_only = _randomised(NETS[name](pooled_dim=None))
    ref = tokens_only(x, t, ctx)
    assert torch.equal(tokens_only(x, t, Context(ctx.tokens, ctx.mask, -ctx.pooled)), ref)
    bare = NETS[name](context_dim=None, pooled_dim=None)
    with pytest.raises(ValueError, match="context_dim or pooled_dim"):
        bare(x, t, ctx)


def test_context_batching() -> None:
    a, b = random_context([2, 4], seed=1), random_context([3], seed=2)
    both = Context.cat([a, b])  # padded to 4 tokens
    assert both.tokens.shape == (3, 4, DIM) and both.mask.sum(1).tolist() == [2, 4, 3]
    assert torch.equal(both.tokens[2, :3], b.tokens[0]) and not both.mask[2, 3]
    assert torch.equal(both[2:].tokens[:, :3], b.tokens)
    assert torch.equal(both[2:].trimmed().tokens, b.tokens)  # the unused padding column gone
    assert len(b.expand(5)) == 5 and torch.equal(b.expand(5).tokens[4], b.tokens[0])
    with pytest.raises(ValueError, match="at least one real token"):
        Context(a.tokens, torch.zeros_like(a.mask), a.pooled)
    with pytest.raises(ValueError, match="cannot serve"):
        a.expand(3)
