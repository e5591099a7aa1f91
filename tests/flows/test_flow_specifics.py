"""Layer-specific properties: actnorm initialisation, unit NICE Jacobian, scaling and LU
log-determinants, identity-at-initialisation couplings."""

from __future__ import annotations

import torch

from genlab.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    ConvConditioner,
    DiagonalScaling,
    InvConv1x1,
    MLPConditioner,
    nice,
)


def test_actnorm_data_dependent_init_standardises_each_channel() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 4, 4, generator=g, dtype=torch.float64)
    x = x * torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)[None, :, None, None] + 3.0
    layer = ActNorm(3).double().train()
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64))
    var = y.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(var, torch.ones(3, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    # initialisation happens once: a second batch leaves the parameters alone
    bias = layer.bias.detach().clone()
    layer(x + 10.0)
    torch.testing.assert_close(layer.bias.detach(), bias)


def test_actnorm_eval_mode_does_not_initialise() -> None:
    layer = ActNorm(2).eval()
    layer(torch.randn(4, 2) + 5.0)
    assert not bool(layer.initialized)


def test_nice_coupling_has_unit_jacobian() -> None:
    part = ChannelPartition(6, interleave=True)
    layer = AdditiveCoupling(part, MLPConditioner(3, 3, 16)).double()
    with torch.no_grad():
        layer.conditioner.out.weight.normal_()
    x = torch.randn(5, 6, dtype=torch.float64)
    y, logdet = layer(x)
    assert torch.equal(logdet, torch.zeros(5, dtype=torch.float64))
    assert not torch.allclose(y, x)
    torch.testing.assert_close(y[:, 0::2], x[:, 0::2])  # the even half conditions, unchanged


def test_diagonal_scaling_logdet_is_sum_of_log_scales() -> None:
    layer = DiagonalScaling((2, 3)).double()
    with torch.no_grad():
        layer.log_scale.normal_()
    y, logdet = layer(torch.ones(4, 2, 3, dtype=torch.float64))
    torch.testing.assert_close(logdet, layer.log_scale.sum().expand(4))
    torch.testing.assert_close(y[0], torch.exp(layer.log_scale))


def test_nice_model_logdet_comes_only_from_scaling() -> None:
    flow = nice(4, n_couplings=4, hidden=8, n_layers=1).double()
    scaling = flow.layers[-1]
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_()
    _, logdet = flow(torch.randn(3, 4, dtype=torch.float64))
    torch.testing.assert_close(logdet, scaling.log_scale.sum().expand(3))


def test_lu_invconv_logdet_equals_hw_times_slogdet() -> None:
    for lu in (True, False):
        layer = InvConv1x1(4, lu=lu).double()
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.2 * torch.randn_like(p))
        _, logdet = layer(torch.randn(2, 4, 3, 5, dtype=torch.float64))
        expected = 3 * 5 * torch.linalg.slogdet(layer.weight_matrix())[1]
        torch.testing.assert_close(logdet, expected.expand(2))


def test_invconv_starts_as_a_rotation() -> None:
    w = InvConv1x1(5, lu=True).double().weight_matrix().detach()
    torch.testing.assert_close(w @ w.T, torch.eye(5, dtype=torch.float64), atol=1e-6, rtol=0)


def test_couplings_start_as_identity() -> None:
    x = torch.randn(3, 2, 4, 4)
    for part, c_a in ((CheckerboardPartition(4, 4), 2), (ChannelPartition(2), 1)):
        layer = AffineCoupling(part, ConvConditioner(c_a, 4 if c_a == 2 else 2, 8))
        y, logdet = layer(x)
        torch.testing.assert_close(y, x)
        torch.testing.assert_close(logdet, torch.zeros(3))


def test_checkerboard_changes_only_unmasked_entries() -> None:
    part = CheckerboardPartition(4, 4, parity=0)
    layer = AffineCoupling(part, ConvConditioner(1, 2, 8))
    with torch.no_grad():
        layer.conditioner.conv_out.weight.normal_()
        layer.conditioner.conv_out.bias.normal_()
    x = torch.randn(2, 1, 4, 4)
    y, _ = layer(x)
    kept = part.mask.bool().expand_as(x)
    torch.testing.assert_close(y[kept], x[kept])
    assert not torch.allclose(y[~kept], x[~kept])


def _copy_parameters(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    with torch.no_grad():
        for pd, ps in zip(dst.parameters(), src.parameters(), strict=True):
            pd.copy_(ps)


def test_mlp_dropout_acts_in_training_mode_only() -> None:
    plain = MLPConditioner(3, 4, 32, n_layers=3)
    drop = MLPConditioner(3, 4, 32, n_layers=3, dropout=0.5)
    with torch.no_grad():
        plain.out.weight.normal_()
    _copy_parameters(drop, plain)
    x = torch.randn(8, 3)
    drop.train()
    assert not torch.equal(drop(x), drop(x))  # a fresh dropout mask per call
    drop.eval()
    torch.testing.assert_close(drop(x), plain(x))


def test_nice_with_dropout_in_eval_mode_is_the_same_bijection() -> None:
    torch.manual_seed(0)
    flow = nice(6, n_couplings=3, hidden=16, n_layers=2, dropout=0.5).double()
    ref = nice(6, n_couplings=3, hidden=16, n_layers=2).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_()
    _copy_parameters(ref, flow)
    x = torch.randn(4, 6, dtype=torch.float64)
    z, ld = flow.eval()(x)
    z_ref, ld_ref = ref.eval()(x)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(ld, ld_ref)
