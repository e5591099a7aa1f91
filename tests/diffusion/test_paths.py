"""Path identities: inverse round trips, analytic derivatives, discrete DDPM exactness."""

import math

import pytest
import torch

from genlab.diffusion.paths import (
    PATHS,
    DDPMPath,
    NoisePath,
    TabulatedDDPMPath,
    ddpm_alphas_cumprod,
)

ALL_PATHS = [cls() for cls in PATHS.values()] + [
    DDPMPath(schedule="scaled_linear"),
    DDPMPath(schedule="cosine"),
]


def _interior_t(path: NoisePath, n: int = 101) -> torch.Tensor:
    lo, hi = path.t_min, path.t_max
    pad = 1e-3 * (hi - lo)
    return torch.linspace(lo + pad, hi - pad, n, dtype=torch.float64)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: f"{p.name}-{p.config()}")
def test_inverse_round_trip(path: NoisePath) -> None:
    t = _interior_t(path)
    s = path.noise_level(t)
    assert torch.all(s[1:] > s[:-1]), "noise level must increase with t"
    torch.testing.assert_close(path.t_from_noise(s), t, rtol=1e-10, atol=1e-10 * path.t_max)
    s2 = torch.logspace(
        math.log10(path.sigma_min), math.log10(path.sigma_max), 50, dtype=torch.float64
    )
    torch.testing.assert_close(path.noise_level(path.t_from_noise(s2)), s2, rtol=1e-9, atol=0)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: f"{p.name}-{p.config()}")
def test_derivatives_match_finite_differences(path: NoisePath) -> None:
    t = _interior_t(path, 37)
    if isinstance(path, DDPMPath):  # piecewise: stay inside one interval
        t = torch.floor(t) + 0.5
    h = 1e-6 * (path.t_max - path.t_min)
    c, cp, cm = path.coefs(t), path.coefs(t + h), path.coefs(t - h)
    torch.testing.assert_close(c.d_alpha, (cp.alpha - cm.alpha) / (2 * h), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(c.d_sigma, (cp.sigma - cm.sigma) / (2 * h), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(c.noise_level, c.sigma / c.alpha)


@pytest.mark.parametrize("name", ["vp", "cosine", "ddpm"])
def test_variance_preserving(name: str) -> None:
    path = PATHS[name]()
    c = path.coefs(_interior_t(path))
    torch.testing.assert_close(c.alpha**2 + c.sigma**2, torch.ones_like(c.t))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine"])
def test_ddpm_exact_at_integer_steps(schedule: str) -> None:
    path = DDPMPath(schedule=schedule)
    k = torch.arange(path.num_steps, dtype=torch.float64)
    abar = path.alphas_cumprod
    c = path.coefs(k)
    torch.testing.assert_close(c.alpha, abar.sqrt(), rtol=1e-13, atol=0)
    torch.testing.assert_close(c.sigma, (1 - abar).sqrt(), rtol=1e-12, atol=0)
    assert torch.equal(path.t_from_noise(path.noise_levels), k)
    # between steps: log s is linear in t
    mid = path.t_from_noise(torch.sqrt(path.noise_levels[:-1] * path.noise_levels[1:]))
    torch.testing.assert_close(mid, k[:-1] + 0.5)


def test_ddpm_schedules_reproduce_their_betas() -> None:
    abar = ddpm_alphas_cumprod("linear", 1000)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    torch.testing.assert_close(betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    # Stable Diffusion's schedule: the noise-level range the anchors quote (14.6146 .. 0.0291675)
    sd = DDPMPath(schedule="scaled_linear")
    assert sd.sigma_max == pytest.approx(14.6146, abs=1e-4)
    assert sd.sigma_min == pytest.approx(0.0291675, rel=2e-5)  # anchors used float32 betas
    cos = ddpm_alphas_cumprod("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos[499].item() == pytest.approx(f(500) / f(0), rel=1e-12)


def test_vp_matches_song_et_al_closed_form() -> None:
    path = PATHS["vp"]()
    t = torch.linspace(0.01, 1, 20, dtype=torch.float64)
    log_mean = -0.25 * t**2 * (20 - 0.1) - 0.5 * t * 0.1  # Song et al. (2021), eq. 33
    torch.testing.assert_close(path.coefs(t).alpha, torch.exp(log_mean))


def test_unknown_ddpm_schedule_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="linear, scaled_linear, cosine"):
        DDPMPath(schedule="quadratic")


def test_tabulated_path_is_the_named_one_on_its_table() -> None:
    """A DDPM path over a given table is the named schedule's path when given its table."""
    named = DDPMPath(schedule="scaled_linear", num_steps=200)
    table = TabulatedDDPMPath(table=tuple(named.alphas_cumprod.tolist()), time_input="continuous")
    t = torch.linspace(0, 199, 97, dtype=torch.float64)
    assert table.num_steps == 200 and torch.equal(table.noise_levels, named.noise_levels)
    for a, b in zip(vars(table.coefs(t)).values(), vars(named.coefs(t)).values(), strict=True):
        assert torch.equal(a, b)
    s = named.noise_levels
    assert torch.equal(table.t_from_noise(s), named.t_from_noise(s))


def test_tabulated_path_time_input_and_errors() -> None:
    t = torch.tensor([3.0, 2.9995, 4.4, 4.6], dtype=torch.float64)
    abar = (0.9, 0.7, 0.5, 0.3, 0.1, 0.05)
    nearest = TabulatedDDPMPath(table=abar).net_time(t).tolist()
    assert nearest == [3.0, 3.0, 4.4, 4.6]
    assert TabulatedDDPMPath(table=abar, time_input="round").net_time(t).tolist() == [3, 3, 4, 5]
    with pytest.raises(ValueError, match="decrease strictly"):
        TabulatedDDPMPath(table=(0.9, 0.95))
    with pytest.raises(ValueError, match="lie in"):
        TabulatedDDPMPath(table=(1.0, 0.5))
    with pytest.raises(ValueError, match="allowed: continuous, nearest, round"):
        TabulatedDDPMPath(table=abar, time_input="floor")
