"""NormalizingFlow: densities integrate to one, whole models invert, shapes and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.flows import (
    Compose,
    Logit,
    NormalizingFlow,
    dequantized_bpd,
    glow_image,
    glow_vector,
    nice,
    realnvp_image,
    realnvp_vector,
)


def _randomize(model: torch.nn.Module, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("build", [realnvp_vector, glow_vector, nice])
def test_density_integrates_to_one_on_a_grid(build) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    flow = build(2, hidden=16) if build is not nice else nice(2, n_couplings=4, hidden=16)
    model = NormalizingFlow(flow, (2,)).double().eval()
    _randomize(model, 0.1)
    n, lim = 400, 9.0
    t = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)  # (n^2, 2)
    with torch.no_grad():
        mass = model.log_prob(grid).exp().sum() * (t[1] - t[0]) ** 2
    assert abs(float(mass) - 1.0) < 5e-3


IMAGE_MODELS = {
    "nice": lambda: Compose([_flatten(), nice(16, n_couplings=4, hidden=16, n_layers=2)]),
    "realnvp": lambda: realnvp_image((1, 4, 4), levels=2, n_blocks=2, n_checkerboard=2, hidden=8),
    "glow": lambda: glow_image((1, 4, 4), levels=2, n_steps=2, hidden=8, lu=True),
    "glow_plain": lambda: glow_image((1, 4, 4), levels=2, n_steps=2, hidden=8, lu=False),
}


def _flatten():  # type: ignore[no-untyped-def]
    from genlab.flows import Flatten

    return Flatten((1, 4, 4))


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_image_models_invert_in_float64(name: str) -> None:
    torch.manual_seed(0)
    model = NormalizingFlow(IMAGE_MODELS[name](), (1, 4, 4), levels=17, preprocess=Logit())
    model = model.double()
    model.train()
    v = torch.randint(0, 17, (8, 1, 4, 4)).double()
    model.loss(v)  # triggers actnorm initialisation
    model.eval()
    _randomize(model, 0.1)
    x = (v + torch.rand_like(v)) / 17
    z, _ = model.transform(x)
    assert z.shape == (8, 16)
    back = model.preprocess.inverse(model.flow.inverse(z))  # type: ignore[union-attr]
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 4, 4)
    assert samples.min() >= 0 and samples.max() <= 16
    assert torch.equal(samples, samples.round())


def test_loss_is_discrete_nll_in_nats_and_matches_log_prob() -> None:
    torch.manual_seed(0)
    model = NormalizingFlow(
        realnvp_image((1, 4, 4), levels=1, n_blocks=2, n_checkerboard=1, hidden=8),
        (1, 4, 4),
        levels=17,
        preprocess=Logit(),
    )
    v = torch.randint(0, 17, (6, 1, 4, 4)).float()
    torch.manual_seed(5)
    loss = model.loss(v)
    torch.manual_seed(5)
    x = (v + torch.rand(v.shape)) / 17
    expected = -model.log_prob(x) + 16 * math.log(17)
    assert loss.shape == (6,)
    torch.testing.assert_close(loss, expected)


def test_dequantized_bpd_is_deterministic_and_consistent_with_log_prob() -> None:
    torch.manual_seed(0)
    model = NormalizingFlow(
        glow_image((1, 4, 4), levels=1, n_steps=1, hidden=8),
        (1, 4, 4),
        levels=17,
        preprocess=Logit(),
    ).eval()
    v = torch.randint(0, 17, (5, 1, 4, 4)).float()
    a = dequantized_bpd(model, v, range(3))
    b = dequantized_bpd(model, v, range(3))
    assert a.shape == (5,)
    torch.testing.assert_close(a, b)
    nll = torch.zeros(5, dtype=torch.float64)
    for s in range(3):
        x = (v + torch.rand(v.shape, generator=torch.Generator().manual_seed(s))) / 17
        nll -= model.log_prob(x).double().detach()
    expected = (nll / 3 + 16 * math.log(17)) / (16 * math.log(2))
    torch.testing.assert_close(a, expected)


def test_sample_temperature_zero_gives_the_image_of_the_origin() -> None:
    torch.manual_seed(0)
    model = NormalizingFlow(realnvp_vector(2, hidden=8), (2,)).eval()
    _randomize(model)
    s = model.sample(3, temperature=0.0)
    origin = model.flow.inverse(torch.zeros(1, 2))
    torch.testing.assert_close(s, origin.expand(3, 2))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(model.sample(4, generator=g1), model.sample(4, generator=g2))


def test_conditional_vector_flow_uses_cond() -> None:
    torch.manual_seed(0)
    model = NormalizingFlow(realnvp_vector(2, hidden=8, cond_dim=3), (2,)).eval()
    _randomize(model)
    x, c = torch.randn(4, 2), torch.randn(4, 3)
    assert not torch.allclose(model.log_prob(x, c), model.log_prob(x, c + 1.0))
    assert model.loss(x, c).shape == (4,)
    assert model.sample(4, c).shape == (4, 2)
    with pytest.raises(ValueError, match="cond"):
        model.log_prob(x)
