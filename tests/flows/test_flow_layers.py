"""Contract test run over every flow layer: exact inverse in float64
and log-determinant equal to ln|det J| of the brute-force autograd Jacobian."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from genlab.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    Compose,
    ConvConditioner,
    DiagonalScaling,
    Flatten,
    FlowLayer,
    InvConv1x1,
    Logit,
    MLPConditioner,
    Squeeze,
    glow_image,
    glow_vector,
    nice,
    realnvp_image,
    realnvp_vector,
)


def _randomize(layer: FlowLayer, scale: float = 0.3) -> FlowLayer:
    """Move every parameter away from its (often identity) initialisation."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


def _img_coupling(kind: str, c: int, affine: bool, scale: str = "tanh") -> FlowLayer:
    if kind == "checker":
        part = CheckerboardPartition(4, 4, parity=1)
        c_a, c_b = c, c
    else:
        part = ChannelPartition(c, flip=True)
        c_a, c_b = part.n_a, part.n_b
    if affine:
        return AffineCoupling(part, ConvConditioner(c_a, 2 * c_b, 8), scale=scale)  # type: ignore[arg-type]
    return AdditiveCoupling(part, ConvConditioner(c_a, c_b, 8))


def _vec_coupling(affine: bool, interleave: bool, scale: str = "tanh") -> FlowLayer:
    part = ChannelPartition(5, interleave=interleave)
    if affine:
        return AffineCoupling(part, MLPConditioner(part.n_a, 2 * part.n_b, 16), scale=scale)  # type: ignore[arg-type]
    return AdditiveCoupling(part, MLPConditioner(part.n_a, part.n_b, 16))


def _actnorm(shape: tuple[int, ...]) -> FlowLayer:
    layer = ActNorm(shape[0])
    layer.initialize(torch.randn(16, *shape, dtype=torch.float64) * 2.0 + 1.0)
    return layer


# name -> (factory, per-example shape, input domain)
CASES: dict[str, tuple[Callable[[], FlowLayer], tuple[int, ...], str]] = {
    "squeeze": (Squeeze, (2, 4, 4), "real"),
    "flatten": (lambda: Flatten((2, 4, 4)), (2, 4, 4), "real"),
    "logit": (Logit, (1, 4, 4), "unit"),
    "additive_checker": (lambda: _img_coupling("checker", 1, False), (1, 4, 4), "real"),
    "additive_channel": (lambda: _img_coupling("channel", 3, False), (3, 4, 4), "real"),
    "affine_checker": (lambda: _img_coupling("checker", 2, True), (2, 4, 4), "real"),
    "affine_channel": (lambda: _img_coupling("channel", 2, True), (2, 4, 4), "real"),
    "affine_channel_sigmoid": (
        lambda: _img_coupling("channel", 4, True, "sigmoid"),
        (4, 2, 2),
        "real",
    ),
    "additive_vec_interleave": (lambda: _vec_coupling(False, True), (5,), "real"),
    "affine_vec": (lambda: _vec_coupling(True, False), (5,), "real"),
    "affine_vec_sigmoid": (lambda: _vec_coupling(True, True, "sigmoid"), (5,), "real"),
    "diag_scaling": (lambda: DiagonalScaling((2, 4, 4)), (2, 4, 4), "real"),
    "actnorm_img": (lambda: _actnorm((2, 4, 4)), (2, 4, 4), "real"),
    "actnorm_vec": (lambda: _actnorm((3,)), (3,), "real"),
    "invconv_plain": (lambda: InvConv1x1(3, lu=False), (3, 4, 4), "real"),
    "invconv_lu": (lambda: InvConv1x1(3, lu=True), (3, 4, 4), "real"),
    "invconv_lu_vec": (lambda: InvConv1x1(4, lu=True), (4,), "real"),
    "compose": (lambda: Compose([Logit(), Squeeze(), InvConv1x1(4)]), (1, 4, 4), "unit"),
    "nice": (lambda: nice(6, n_couplings=3, hidden=16, n_layers=2), (6,), "real"),
    "nice_dropout": (
        lambda: nice(6, n_couplings=3, hidden=16, n_layers=2, dropout=0.5),
        (6,),
        "real",
    ),
    "realnvp_vector": (lambda: realnvp_vector(2, n_couplings=3, hidden=16), (2,), "real"),
    "realnvp_vector_tail_bound": (
        lambda: realnvp_vector(4, n_couplings=3, hidden=16, scale="sigmoid", input_bound=0.7),
        (4,),
        "real",
    ),
    "nice_tail_bound": (
        lambda: nice(6, n_couplings=3, hidden=16, n_layers=2, input_bound=0.7),
        (6,),
        "real",
    ),
    "glow_vector_tail_bound": (
        lambda: glow_vector(3, n_steps=2, hidden=16, input_bound=0.7),
        (3,),
        "real",
    ),
    "glow_vector": (lambda: glow_vector(3, n_steps=2, hidden=16), (3,), "real"),
    "realnvp_image": (
        lambda: realnvp_image((1, 4, 4), levels=2, n_blocks=2, n_checkerboard=2, hidden=8),
        (1, 4, 4),
        "real",
    ),
    "glow_image": (lambda: glow_image((1, 4, 4), levels=2, n_steps=2, hidden=8), (1, 4, 4), "real"),
}


def _make(name: str) -> tuple[FlowLayer, torch.Tensor]:
    factory, shape, domain = CASES[name]
    torch.manual_seed(0)
    layer = _randomize(factory().double()).eval()
    g = torch.Generator().manual_seed(1)
    if domain == "unit":
        x = torch.rand(3, *shape, generator=g, dtype=torch.float64)
    else:
        x = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    return layer, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_is_exact(name: str) -> None:
    layer, x = _make(name)
    z, logdet = layer(x)
    assert logdet.shape == (3,)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(layer.inverse(z), x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_logdet_matches_autograd_jacobian(name: str) -> None:
    layer, x = _make(name)
    _, logdet = layer(x)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]

        def f(flat: torch.Tensor, xi: torch.Tensor = xi) -> torch.Tensor:
            return layer(flat.reshape(xi.shape))[0].flatten()

        jac = jacobian(f, xi.flatten())  # (D, D)
        expected = torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(logdet[i], expected, rtol=1e-9, atol=1e-9)


def test_input_bound_makes_couplings_affine_far_from_the_data() -> None:
    """With a soft-clamped conditioner input the shift and log-scale of a coupling converge
    as x_a -> infinity (so the layer tends to one fixed affine map of x_b); without it a
    ReLU conditioner's shift keeps growing linearly. Near 0 the clamp has slope one."""
    torch.manual_seed(0)
    part = ChannelPartition(4)
    bounded = _randomize(AffineCoupling(part, MLPConditioner(2, 4, 16, input_bound=2.0)))
    plain = AffineCoupling(part, MLPConditioner(2, 4, 16))
    plain.load_state_dict(bounded.state_dict())
    direction = torch.tensor([[0.6, -0.8, 0.0, 0.0]], dtype=torch.float32)
    xb = torch.tensor([[0.0, 0.0, 0.3, -0.2]])

    def params(layer: AffineCoupling, lam: float) -> torch.Tensor:
        x = lam * direction + xb
        xa, xb_ = part.split(x)
        return torch.cat(layer._params(xa, xb_, None), 1)

    with torch.no_grad():
        far = [params(bounded, lam) for lam in (1e2, 1e3, 1e4)]
        assert (far[1] - far[0]).abs().max() < 1e-3 and (far[2] - far[1]).abs().max() < 1e-5
        grow = [params(plain, lam).abs().max() for lam in (1e2, 1e3)]
        assert grow[1] > 5 * grow[0]  # unbounded: the shift extrapolates linearly
        small = 1e-4 * direction + xb  # slope one at 0: the same map to first order
        torch.testing.assert_close(bounded(small)[0], plain(small)[0], rtol=0, atol=1e-7)
