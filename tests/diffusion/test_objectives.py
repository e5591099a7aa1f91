"""The denoising objective: weightings are lambda(sigma) ||D - x0||^2 in x0 space whatever the
network predicts; noise-level distributions have the stated laws; presets build."""

import math

import pytest
import torch
from torch import Tensor

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.objectives import (
    WEIGHTINGS,
    DenoisingLoss,
    LogitNormal,
    LogNormal,
    LogUniform,
    NoiseDistribution,
    UniformK,
    UniformT,
)
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS, DDPMPath, EDMPath, LinearPath, NoisePath, VPPath
from genlab.diffusion.presets import PRESETS, build_objective
from genlab.errors import ConfigError
from genlab.nets.mlp import MLP


class FixedT(NoiseDistribution):
    def __init__(self, t: Tensor) -> None:
        self.t = t

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.t


def _x0_weight(name: str, s: Tensor) -> Tensor:
    """lambda(s) from the papers, written independently of the library."""
    snr = 1.0 / s**2
    return {
        "snr": snr,
        "min_snr": torch.clamp(snr, max=5.0),
        "edm": (s**2 + 0.25) / (s * 0.5) ** 2,
    }[name]


@pytest.mark.parametrize("weighting", sorted(WEIGHTINGS))
@pytest.mark.parametrize("param_name", sorted(PARAMETERIZATIONS))
@pytest.mark.parametrize("path_name", ["linear", "vp", "ddpm", "edm"])
def test_loss_is_weighted_x0_error(path_name: str, param_name: str, weighting: str) -> None:
    torch.manual_seed(0)
    path = PATHS[path_name]()
    param = PARAMETERIZATIONS[param_name]()
    s = torch.logspace(-1.5, 1.5, 16, dtype=torch.float64)
    t = path.t_from_noise(s)
    obj = DenoisingLoss(path, param, FixedT(t), WEIGHTINGS[weighting]())
    net = MLP(3, hidden=32, depth=2).double()
    x0 = torch.randn(16, 3, dtype=torch.float64)
    loss = obj(net, x0, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(16, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x_can = x0 + s[:, None] * eps  # canonical state
    with torch.no_grad():
        err_x0 = (Denoiser(net, path, param)(x_can, s) - x0).pow(2).mean(1)
    c = path.coefs(t)
    lam = param.error_scale(c) if weighting == "uniform" else _x0_weight(weighting, s)
    torch.testing.assert_close(loss.detach(), lam * err_x0, rtol=1e-7, atol=1e-10)


def test_uniform_k_draws_integer_steps_and_needs_ddpm() -> None:
    g = torch.Generator().manual_seed(0)
    t = UniformK().sample_t(20000, DDPMPath(), generator=g)
    assert torch.equal(t, t.round()) and t.min() == 0 and t.max() == 999
    assert abs(t.mean().item() - 499.5) < 5.0  # se = 288.7 / sqrt(2e4) = 2.0
    with pytest.raises(ConfigError, match="ddpm"):
        UniformK().sample_t(4, LinearPath())


def test_lognormal_sigma_law() -> None:
    g = torch.Generator().manual_seed(0)
    path = EDMPath(smin=1e-8, smax=1e8)
    log_s = torch.log(path.noise_level(LogNormal(-1.2, 1.2).sample_t(40000, path, generator=g)))
    assert abs(log_s.mean().item() + 1.2) < 0.03 and abs(log_s.std().item() - 1.2) < 0.03


def test_logit_normal_and_uniform_t_laws() -> None:
    g = torch.Generator().manual_seed(0)
    path = LinearPath()
    t = LogitNormal(0.0, 1.0).sample_t(40000, path, generator=g)
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item()) < 0.03 and abs(logit.std().item() - 1.0) < 0.03
    u = UniformT().sample_t(40000, path, generator=g)
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003


def test_log_uniform_is_the_likelihood_weighting_of_the_vp_path() -> None:
    """On the VP path, t drawn log-uniformly in the noise level has density proportional to
    g(t)^2 / sigma_t^2 = beta(t) / (1 - alpha_t^2) (the score-space likelihood weighting
    beta(t) on the eps error): its CDF is the normalised integral of that density, computed
    here by quadrature, not through log-SNR."""
    path = VPPath()
    t = LogUniform().sample_t(200_000, path, generator=torch.Generator().manual_seed(0))
    assert float(t.min()) >= path.t_min and float(t.max()) <= path.t_max
    grid = torch.linspace(path.t_min, path.t_max, 400_001, dtype=torch.float64)
    c = path.coefs(grid)
    beta = path.beta_min + grid * (path.beta_max - path.beta_min)
    density = beta / c.sigma**2  # (G,)
    steps = 0.5 * (density[1:] + density[:-1]) * torch.diff(grid)  # trapezoids
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)])
    cdf = cdf / cdf[-1]
    probes = torch.tensor([1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8], dtype=torch.float64)
    expected = torch.stack([cdf[torch.searchsorted(grid, p)] for p in probes])
    empirical = torch.tensor([float((t <= p).double().mean()) for p in probes], dtype=torch.float64)
    assert torch.allclose(empirical, expected, atol=5e-3), (empirical, expected)
    # and uniform in the log of the noise level on a path with a plain sigma (EDM)
    edm = EDMPath()
    log_s = torch.log(edm.noise_level(LogUniform().sample_t(40000, edm, generator=None)))
    lo, hi = (math.log(float(edm.noise_level(torch.tensor(t)))) for t in (edm.t_min, edm.t_max))
    assert abs(float(log_s.mean()) - (lo + hi) / 2) < 0.05
    assert abs(float(log_s.var()) - (hi - lo) ** 2 / 12) < 0.1
    # paths whose training range reaches s = 0 or inf use their sigma range instead
    for name in ("linear", "cosine"):
        p = PATHS[name]()
        s = p.noise_level(LogUniform().sample_t(40000, p, generator=None))
        assert torch.isfinite(s).all() and float(s.min()) >= p.sigma_min * (1 - 1e-6)
        lo, hi = math.log(p.sigma_min), math.log(p.sigma_max)
        assert abs(float(torch.log(s).mean()) - (lo + hi) / 2) < 0.1, name


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_and_give_finite_losses(preset: str) -> None:
    obj = build_objective(preset)
    net = MLP(2, hidden=32, depth=2)
    loss = obj(net, torch.randn(256, 2))
    assert loss.shape == (256,) and torch.isfinite(loss).all()


def test_unknown_names_list_allowed_values() -> None:
    with pytest.raises(ConfigError, match="allowed: .*edm.*flow-matching"):
        build_objective("flow-matchin")


def test_ddpm_preset_is_l_simple() -> None:
    """DDPM's L_simple: ||eps_hat - eps||^2 at integer steps (Ho et al. 2020, eq. 14)."""
    obj = build_objective("ddpm")
    assert isinstance(obj.path, DDPMPath) and obj.parameterization.name == "eps"
    assert obj.weighting.x0_weight(obj.path.coefs(torch.tensor([3.0]))) is None
    assert math.isclose(obj.path.sigma_max, math.sqrt(1 / obj.path.alphas_cumprod[-1].item() - 1))
