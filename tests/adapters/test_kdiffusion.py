"""KDiffusionDenoiser: a k-diffusion-convention denoiser ``model(x, sigma, **extra) -> x0``
is genlab's denoiser once ``cond`` is mapped to its keywords.

The k-diffusion-style model here wraps a diffusers UNet the way k-diffusion wraps discrete
eps models (input scaled by 1 / sqrt(1 + sigma^2), time from sigma by log-linear
interpolation of the table, x0 = x - sigma eps), written from that convention: it must equal
`DiffusersDenoiser` on the same UNet, and genlab's samplers must run on it unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel
from diffusers_models import noise, tiny_unet
from torch import Tensor

import genlab
from genlab.adapters.diffusers import DiffusersDenoiser
from genlab.adapters.kdiffusion import KDiffusionDenoiser


class EpsModelInKarrasCoordinates(torch.nn.Module):
    """k-diffusion's convention for a discrete eps model: D(x, sigma, **extra)."""

    def __init__(self, unet: UNet2DModel, table: Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.log_sigmas = torch.log(((1 - table) / table).sqrt())  # (K,) increasing
        self.sigma_min = float(self.log_sigmas[0].exp())
        self.sigma_max = float(self.log_sigmas[-1].exp())

    def t_of(self, sigma: Tensor) -> Tensor:
        ls = sigma.double().log()
        k = (torch.searchsorted(self.log_sigmas, ls) - 1).clamp(0, len(self.log_sigmas) - 2)
        lo, hi = self.log_sigmas[k], self.log_sigmas[k + 1]
        return k + (ls - lo) / (hi - lo)  # (B,)

    def forward(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_in = (1 + sigma**2).rsqrt().view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        eps = self.unet(x * c_in, self.t_of(sigma).float(), class_labels=class_labels).sample
        return x - sigma.view(-1, 1, 1, 1) * eps


@pytest.fixture(scope="module")
def labelled_unet() -> UNet2DModel:
    return tiny_unet(num_class_embeds=3)


def test_equals_the_diffusers_adapter(labelled_unet: UNet2DModel) -> None:
    sch = DDIMScheduler()
    kd = EpsModelInKarrasCoordinates(labelled_unet, sch.alphas_cumprod.double())
    d_k = KDiffusionDenoiser(kd, cond_key="class_labels")
    d_g = DiffusersDenoiser(labelled_unet, sch, time_input="continuous")
    x, y = noise(), torch.tensor([0, 1, 2, 1])
    sigma = torch.tensor([0.05, 1.0, 7.3, 120.0])
    with torch.no_grad():
        torch.testing.assert_close(d_k(x, sigma, y), d_g(x, sigma, y), rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(d_k(x, sigma, {"class_labels": y}), d_k(x, sigma, y))
    assert (d_k.sigma_min, d_k.sigma_max) == pytest.approx((d_g.sigma_min, d_g.sigma_max))
    out = genlab.sample(d_k, noise(), sampler="dpmpp_2m", nfe=6, cond=y)  # range from the model
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_cond_mapping_and_range() -> None:
    seen: list[dict[str, Any]] = []

    def model(x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        seen.append(extra)
        return x / (1 + sigma.view(-1, 1) ** 2)  # the exact denoiser of N(0, I) data

    d = KDiffusionDenoiser(model, sigma_min=0.01, sigma_max=50.0)
    x, s = torch.ones(2, 3), torch.tensor([1.0, 3.0])
    torch.testing.assert_close(d(x, s), torch.tensor([[0.5] * 3, [0.1] * 3]))
    d(x, s, "a prompt")
    d(x, s, {"cond": 1, "uncond": 2})
    assert seen == [{}, {"cond": "a prompt"}, {"cond": 1, "uncond": 2}]
    assert (d.sigma_min, d.sigma_max) == (0.01, 50.0)
    assert KDiffusionDenoiser(model).sigma_min is None
