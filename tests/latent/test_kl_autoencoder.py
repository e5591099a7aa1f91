"""The KL autoencoder: its loss is the squared error plus the weighted Gaussian KL of the
reparameterised posterior, training makes decode(encode(x)) close to x, and the scale
factor of latent diffusion makes the training latents unit-variance."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from latent.tiny import autoencoder_config, latent_config

from genlab.autoencoders.kl import KLAutoencoder, gaussian_kl
from genlab.diffusion.latent import latent_scale
from genlab.families import latent_diffusion
from genlab.runs import build_model, load_run, make_data


def test_gaussian_kl_is_the_closed_form_of_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(50, generator=g, dtype=torch.float64), \
        torch.randn(50, generator=g, dtype=torch.float64)  # fmt: skip
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(50, dtype=torch.float64), 1.0)
    torch.testing.assert_close(gaussian_kl(mean, logvar), torch.distributions.kl_divergence(q, p))
    assert float(gaussian_kl(torch.zeros(3), torch.zeros(3)).abs().max()) == 0.0


def test_loss_is_squared_error_plus_weighted_kl_per_pixel() -> None:
    cfg = autoencoder_config()
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8))
    assert isinstance(model, KLAutoencoder)
    x = make_data(cfg.data).train[:6]
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    mean, logvar = model.posterior(x)
    z = mean + torch.exp(logvar / 2) * torch.randn_like(mean)
    sq = (model.decode(z) - x).square().sum((1, 2, 3))
    kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum((1, 2, 3))
    torch.testing.assert_close(loss, (sq + 1e-5 * kl) / 64)
    assert model.latent_shape == (2, 4, 4) and model.encode(x).shape == (6, 2, 4, 4)


def test_training_makes_the_round_trip_close(ae_dir: Path) -> None:
    data = make_data(autoencoder_config().data)
    torch.manual_seed(0)
    untrained = build_model(autoencoder_config(), data.shape).eval()
    trained = load_run(ae_dir).model
    x = data.test
    with torch.no_grad():
        before = float((untrained.decode(untrained.encode(x)) - x).square().mean())
        after = float((trained.decode(trained.encode(x)) - x).square().mean())
    assert after < 0.1 * before and after < 0.05, (before, after)


def test_scale_factor_gives_unit_std_on_the_training_split(ae_dir: Path) -> None:
    model = load_run(ae_dir).model
    cfg = latent_config(ae_dir)
    train = make_data(cfg.data).train
    with torch.no_grad():
        z = model.encode(train).double()  # every training image at once, by hand
    n = z.numel()
    std = math.sqrt(float((z - z.mean()).square().sum()) / (n - 1))
    scale = latent_scale(model, train, batch_size=100)  # in batches
    assert scale == pytest.approx(1.0 / std, rel=1e-6)
    assert float((z * scale).std()) == pytest.approx(1.0, rel=1e-6)
    prepared = latent_diffusion.prepare(cfg)  # what a latent run records in config.json
    assert prepared.options.scale_factor == pytest.approx(1.0 / std, rel=1e-5)
    fixed = latent_diffusion.prepare(latent_config(ae_dir, **{"latent-diffusion": {
        "scale_factor": 0.5}}))  # fmt: skip
    assert fixed.options.scale_factor == 0.5  # a given factor is kept
