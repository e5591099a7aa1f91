"""Contract tests run over both image backbones (UNet and DiT)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from genlab.nets.dit import DiT, DiTConfig
from genlab.nets.unet import UNet, UNetConfig

NUM_CLASSES, CTX = 10, 6


def _unet(**kw: object) -> nn.Module:
    cfg = dict(
        in_channels=2,
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        head_dim=8,
        num_classes=NUM_CLASSES,
        context_dim=CTX,
    )
    cfg.update(kw)
    return UNet(UNetConfig(**cfg))  # type: ignore[arg-type]


def _dit(**kw: object) -> nn.Module:
    cfg = dict(
        in_channels=2,
        patch_size=2,
        hidden=32,
        depth=2,
        num_heads=4,
        num_classes=NUM_CLASSES,
        context_dim=CTX,
    )
    cfg.update(kw)
    return DiT(DiTConfig(**cfg))  # type: ignore[arg-type]


BUILDERS: dict[str, Callable[..., nn.Module]] = {"unet": _unet, "dit": _dit}


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Move every zero-initialised weight off zero so outputs and gradients are informative."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


def _inputs(size: int, labels: bool, context: bool, seed: int = 1) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, size, size, generator=g)
    t = torch.tensor([0.0, 500.0, -300.0])  # includes a negative t (250 ln sigma)
    y = torch.tensor([0, 9, NUM_CLASSES]) if labels else None  # NUM_CLASSES = null label
    ctx = torch.randn(3, 5, CTX, generator=g) if context else None
    return x, t, y, ctx  # type: ignore[return-value]


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("size", [8, 16, 7])
@pytest.mark.parametrize(("labels", "context"), [(False, False), (True, False), (True, True)])
def test_shape_and_determinism(name: str, size: int, labels: bool, context: bool) -> None:
    torch.manual_seed(0)
    a = _randomise(BUILDERS[name](dropout=0.1) if name == "unet" else BUILDERS[name]()).eval()
    torch.manual_seed(0)
    b = _randomise(BUILDERS[name](dropout=0.1) if name == "unet" else BUILDERS[name]()).eval()
    x, t, y, ctx = _inputs(size, labels, context)
    out = a(x, t, y, context=ctx)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, b(x, t, y, context=ctx))  # same seed, eval mode: same output
    assert torch.equal(out, a(x, t, y, context=ctx))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_conditioning_changes_output(name: str) -> None:
    net = _randomise(BUILDERS[name]()).eval()
    x, t, y, ctx = _inputs(8, True, True)
    base = net(x, t, y, context=ctx)
    assert not torch.allclose(base, net(x, t + 10, y, context=ctx))
    assert not torch.allclose(base, net(x, t, (y + 1) % NUM_CLASSES, context=ctx))
    assert not torch.allclose(base, net(x, t, y, context=ctx + 1))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_zero_output_at_init(name: str) -> None:
    net = BUILDERS[name](out_channels=3)
    x, t, y, ctx = _inputs(8, True, True)
    out = net(x, t, y, context=ctx)
    assert out.shape == (3, 3, 8, 8) and torch.equal(out, torch.zeros_like(out))


def test_dit_blocks_are_identity_at_init() -> None:
    """adaLN-Zero: every block's gates start at zero, so each block is the identity."""
    net = _dit()
    h, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    for block in net.blocks:
        assert torch.equal(block(h, c, torch.randn(2, 5, CTX)), h)


def test_dit_unpatchify_is_local() -> None:
    """With no blocks each output patch depends only on the same input patch."""
    net = _randomise(_dit(depth=0)).double()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    net(x, torch.zeros(1))[0, 1, 5, 2].backward()
    support = x.grad[0].abs().sum(0) > 0  # (8, 8)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[4:6, 2:4] = True
    assert torch.equal(support, expected)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_checkpointing_same_gradients(name: str) -> None:
    """Recomputation replays dropout with the saved RNG state, so gradients match."""
    extra = {"dropout": 0.2} if name == "unet" else {}
    torch.manual_seed(0)
    plain = _randomise(BUILDERS[name](**extra))
    torch.manual_seed(0)
    ckpt = _randomise(BUILDERS[name](use_checkpoint=True, **extra))
    x, t, y, ctx = _inputs(8, True, True)
    for net in (plain, ckpt):
        net.train()
        net.zero_grad()
        torch.manual_seed(3)
        (net(x, t, y, context=ctx) ** 2).mean().backward()
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, n
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_bf16_autocast_close_to_fp32(name: str) -> None:
    net = _randomise(BUILDERS[name]()).eval()
    x, t, y, ctx = _inputs(8, True, True)
    ref = net(x, t, y, context=ctx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, t, y, context=ctx)
        (low.float() ** 2).mean().backward()  # backward under autocast runs too
    assert torch.isfinite(low).all()
    err = (low.float() - ref).norm() / ref.norm()
    assert err < 0.05, err


@pytest.mark.parametrize("name", list(BUILDERS))
def test_errors(name: str) -> None:
    x, t, y, ctx = _inputs(8, True, True)
    bare = BUILDERS[name](num_classes=None, context_dim=None)
    with pytest.raises(ValueError, match="num_classes"):
        bare(x, t, y)
    with pytest.raises(ValueError, match="context_dim"):
        bare(x, t, None, context=ctx)
    with pytest.raises(ValueError, match="class labels must lie"):
        BUILDERS[name]()(x, t, y + 1, context=ctx)


def test_unet_config_checks() -> None:
    with pytest.raises(ValueError, match="attention_levels"):
        _unet(attention_levels=(2,))


def test_dit_other_input_sizes_use_fresh_positions() -> None:
    net = _randomise(_dit()).eval()
    x, t, y, _ = _inputs(12, True, False)
    out = net(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
