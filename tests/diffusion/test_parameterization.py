"""Every parameterization converts to the same x0; the exact (Bayes-optimal) network of each
parameterization, wrapped by `Denoiser`, reproduces the analytic mixture's denoiser."""

import pytest
import torch
from torch import Tensor, nn

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.parameterization import PARAMETERIZATIONS, EDMPrecond, Parameterization
from genlab.diffusion.paths import PATHS, Coefs, DDPMPath, NoisePath

PATH_LIST = [cls() for cls in PATHS.values()] + [DDPMPath(schedule="cosine")]
PARAMS = [cls() for cls in PARAMETERIZATIONS.values()]


def _b(v: Tensor) -> Tensor:
    return v[:, None]


def expected_target(param: Parameterization, x_t: Tensor, c: Coefs, x0_mean: Tensor) -> Tensor:
    """E[target | x_t], written from the definitions (targets are linear in x0 and eps)."""
    a, s, da, ds = _b(c.alpha), _b(c.sigma), _b(c.d_alpha), _b(c.d_sigma)
    eps_mean = (x_t - a * x0_mean) / s
    if param.name == "eps":
        return eps_mean
    if param.name == "x0":
        return x0_mean
    if param.name == "v":
        return a * eps_mean - s * x0_mean
    if param.name == "velocity":
        return da * x0_mean + ds * eps_mean
    if param.name == "score":
        return -eps_mean / s
    assert isinstance(param, EDMPrecond)
    sd = param.sigma_data
    sl = s / a  # canonical noise level
    x_can = x_t / a
    c_skip, c_out = sd**2 / (sl**2 + sd**2), sl * sd / torch.sqrt(sl**2 + sd**2)
    return (x0_mean - c_skip * x_can) / c_out


class OracleNet(nn.Module):
    """The minimiser of the denoising loss: E[target | x_t] from the exact mixture posterior."""

    def __init__(self, gmm: GaussianMixture, path: NoisePath, param: Parameterization) -> None:
        super().__init__()
        self.gmm, self.path, self.param = gmm, path, param

    def forward(self, net_x: Tensor, net_t: Tensor, cond: Tensor | None = None) -> Tensor:
        # Recover t, alpha, sigma from the network inputs the parameterization produced.
        if isinstance(self.param, EDMPrecond):
            s = torch.exp(net_t.double() / 250.0)
            t = self.path.t_from_noise(s)
            c = self.path.coefs(t)
            x_t = net_x * _b(torch.sqrt(c.sigma**2 + (c.alpha * self.param.sigma_data) ** 2))
        else:
            t = self._t_from_net_time(net_t.double())
            c = self.path.coefs(t)
            x_t = net_x
        x0_mean = self.gmm.denoiser(x_t / _b(c.alpha), c.noise_level)
        return expected_target(self.param, x_t, c, x0_mean)

    def _t_from_net_time(self, nt: Tensor) -> Tensor:
        if self.path.name == "edm":
            return torch.exp(nt / 250.0)
        if self.path.name == "ddpm":
            return nt
        return nt / 1000.0


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.name)
@pytest.mark.parametrize("path", PATH_LIST, ids=lambda p: p.name)
def test_target_round_trip(path: NoisePath, param: Parameterization) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    lo, hi = path.t_from_noise(torch.tensor([0.01, 50.0], dtype=torch.float64)).tolist()
    t = lo + (hi - lo) * torch.rand(64, generator=g, dtype=torch.float64)
    c = path.coefs(t)
    x_t = _b(c.alpha) * x0 + _b(c.sigma) * eps
    out = param.target(x0, eps, c)
    torch.testing.assert_close(param.to_x0(out, x_t, c), x0, rtol=1e-9, atol=1e-9)
    # error_scale: ||d out||^2 = lambda_native ||d x0||^2 (to_x0 is affine in the output)
    d_out = torch.randn(64, 3, generator=g, dtype=torch.float64)
    d_x0 = param.to_x0(out + d_out, x_t, c) - param.to_x0(out, x_t, c)
    lam = d_out.pow(2).sum(1) / d_x0.pow(2).sum(1)
    torch.testing.assert_close(lam, param.error_scale(c), rtol=1e-8, atol=0)


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.name)
@pytest.mark.parametrize("path", PATH_LIST, ids=lambda p: p.name)
def test_oracle_network_gives_exact_denoiser(path: NoisePath, param: Parameterization) -> None:
    gmm = GaussianMixture.ring(k=8, radius=4.0, std=0.3, dim=2)
    g = torch.Generator().manual_seed(1)
    sigma = torch.logspace(-1.5, 1.5, 32, dtype=torch.float64)
    x = gmm.sample(32, generator=g).double() + sigma[:, None] * torch.randn(
        32, 2, generator=g, dtype=torch.float64
    )
    den = Denoiser(OracleNet(gmm, path, param), path, param)
    torch.testing.assert_close(den(x, sigma), gmm.denoiser(x, sigma), rtol=1e-6, atol=1e-6)


def test_edm_precond_finite_at_pure_noise() -> None:
    """On the linear path t = 1 has alpha = 0; the EDM formulas must stay finite."""
    path, param = PATHS["linear"](), EDMPrecond()
    c = path.coefs(torch.tensor([1.0, 0.5], dtype=torch.float64))
    x_t = torch.randn(2, 4, dtype=torch.float64)
    net_x, _ = param.net_inputs(x_t, c, path)
    out = torch.randn(2, 4, dtype=torch.float64)
    assert torch.isfinite(net_x).all() and torch.isfinite(param.to_x0(out, x_t, c)).all()
    torch.testing.assert_close(param.to_x0(out, x_t, c)[0], 0.5 * out[0])  # c_skip = 0, c_out = sd
