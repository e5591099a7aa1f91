"""Samplers against the analytic Gaussian mixture: one contract test over every sampler,
convergence orders on the exact probability-flow ODE, the DDIM identities, and DDIM on the
discrete DDPM path against the paper's update written in x_t coordinates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from genlab.data.gmm import GaussianMixture
from genlab.diffusion import schedules
from genlab.diffusion.multistep import dpmpp_2m, dpmpp_3m, unipc
from genlab.diffusion.paths import DDPMPath
from genlab.diffusion.sample import SAMPLERS
from genlab.diffusion.samplers import ddim, euler, heun, rk45
from genlab.diffusion.stochastic import ddpm

RING = GaussianMixture.ring()  # 8 components, radius 4, std 0.3


def _options(name: str) -> dict[str, Any]:
    return {
        "rk45": {"rtol": 1e-4, "atol": 1e-4},
        "langevin": {"n_steps_each": 5, "step_size": 2e-4},
        "predictor_corrector": {"n_corrector": 1, "snr": 0.1},
    }.get(name, {})


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_contract(name: str) -> None:
    """Shape and dtype kept, finite, callback per step with the documented keys, and the
    same generator seed gives the same result."""
    fn = SAMPLERS[name].fn
    sig = schedules.karras(6, 0.01, 20.0)
    x = 20.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0))  # float32
    seen: list[dict[str, Any]] = []
    out = fn(
        RING,
        x,
        sig,
        generator=torch.Generator().manual_seed(1),
        callback=seen.append,
        **_options(name),
    )
    assert out.shape == x.shape and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    assert seen and set(seen[0]) == {"i", "x", "sigma", "denoised"}
    again = fn(RING, x, sig, generator=torch.Generator().manual_seed(1), **_options(name))
    torch.testing.assert_close(out, again, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_reaches_ring_mixture(name: str) -> None:
    """At a generous budget every sampler's samples have the exact mixture's mean
    log-density (within Monte-Carlo error) and equal mass on all eight components."""
    n_samples = 2000
    gen = torch.Generator().manual_seed(2)
    info = SAMPLERS[name]
    s_min = 0.01 if name == "langevin" else 0.002
    steps = {"langevin": 60, "predictor_corrector": 100, "heun": 40, "edm_stochastic": 40}
    sig = schedules.karras(steps.get(name, 80), s_min, 80.0)
    x = 80.0 * torch.randn(n_samples, 2, dtype=torch.float64, generator=gen)
    out = info.fn(RING, x, sig, generator=gen, **_options(name))
    exact = RING.sample(20_000, generator=torch.Generator().manual_seed(3))
    lp, lp_exact = RING.log_prob(out), RING.log_prob(exact)
    se = math.sqrt(lp.var() / n_samples + lp_exact.var() / len(exact))
    # unadjusted Langevin keeps an O(step) bias at a finite number of steps per level
    bias = 0.15 if name == "langevin" else 0.02
    assert abs(float(lp.mean() - lp_exact.mean())) < 4 * se + bias, name
    labels = torch.cdist(out, RING.means).argmin(1)
    freq = torch.bincount(labels, minlength=8).double() / n_samples
    assert float((freq - 1 / 8).abs().max()) < 0.04, name


@pytest.fixture(scope="module")
def ode_problem() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """A smooth mixture, float64 start points and the PF-ODE endpoint by tight rk45."""
    g = GaussianMixture.ring(k=4, radius=2.0, std=0.5)
    gen = torch.Generator().manual_seed(0)
    x = g.sample(128, generator=gen) + 20.0 * torch.randn(
        128, 2, dtype=torch.float64, generator=gen
    )
    ref = rk45(g, x, schedules.loglinear(2, 0.05, 20.0), rtol=1e-12, atol=1e-12)
    return g, x, ref


ORDER_CASES = [
    ("euler", euler, 1.0, 1.3),
    ("heun", heun, 1.7, 2.3),
    ("dpmpp_2m", dpmpp_2m, 1.7, 2.3),
    ("dpmpp_3m", dpmpp_3m, 2.5, 4.5),
    # the reference code's update applies half the curvature term: second order
    ("dpmpp_3m_dpm_solver", lambda *a, **k: dpmpp_3m(*a, variant="dpm-solver", **k), 1.7, 2.4),
    ("unipc_bh2", unipc, 2.5, 5.0),
    ("unipc_bh1_order2", lambda *a, **k: unipc(*a, order=2, variant="bh1", **k), 2.5, 4.0),
    ("unipc_limited", lambda *a, **k: unipc(*a, limiter=1.0, **k), 2.5, 5.0),
]


@pytest.mark.parametrize(("name", "fn", "lo", "hi"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_convergence_order(ode_problem: Any, name: str, fn: Any, lo: float, hi: float) -> None:
    """Slope of log RMSE vs log NFE on the exact PF-ODE (log-linear grid, 16..64 steps)."""
    g, x, ref = ode_problem
    nfes, errs = [], []
    for n in (16, 32, 64):
        out = fn(g, x, schedules.loglinear(n, 0.05, 20.0))
        nfes.append(2 * n - 1 if name == "heun" else n)
        errs.append(float(((out - ref) ** 2).mean().sqrt()))
    slope = -np.polyfit(np.log(nfes), np.log(errs), 1)[0]
    assert lo <= slope <= hi, (name, slope, errs)


def test_ddim_eta0_is_euler_and_eta1_is_ddpm() -> None:
    sig = schedules.karras(12, 0.002, 80.0)
    x = 80.0 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(ddim(RING, x, sig, eta=0.0), euler(RING, x, sig))
    a = ddim(RING, x, sig, eta=1.0, generator=torch.Generator().manual_seed(5))
    b = ddpm(RING, x, sig, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # ... and both are Ho et al. (2020)'s ancestral step: the posterior q(x' | x, x0 = D) has
    # mean D + (s'/s)^2 (x - D) and std (s'/s) sqrt(s^2 - s'^2), written here from scratch.
    g, y = torch.Generator().manual_seed(5), x.clone()
    for s, s_next in zip(sig[:-1].tolist(), sig[1:].tolist(), strict=True):
        d = RING(y, torch.full((64,), s, dtype=y.dtype))
        y = d + (s_next / s) ** 2 * (y - d)
        if s_next > 0:
            y = y + (s_next / s) * (s * s - s_next * s_next) ** 0.5 * torch.randn(
                y.shape, generator=g, dtype=y.dtype
            )
    torch.testing.assert_close(a, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_paper_update_on_ddpm_path(spacing: str, eta: float) -> None:
    """Song et al. (2021) Eq. 12: x_{t-1} = sqrt(abar_{t-1}) x0_hat
    + sqrt(1 - abar_{t-1} - s_t^2) eps_hat + s_t z, in x_t coordinates, final abar = 1."""
    path = DDPMPath(schedule="scaled_linear")
    n = 10
    ts = schedules.ddim_timesteps(path.num_steps, n, spacing).tolist()
    abar = path.alphas_cumprod
    sig = schedules.uniform_t(path, n, spacing=spacing)
    gen = torch.Generator().manual_seed(6)
    xt = torch.randn(32, 2, dtype=torch.float64, generator=gen)  # x_T in x_t coordinates
    zgen = torch.Generator().manual_seed(7)
    x = xt
    for j, t in enumerate(ts):
        a_t = float(abar[t])
        a_prev = float(abar[ts[j + 1]]) if j + 1 < len(ts) else 1.0
        s = math.sqrt((1 - a_t) / a_t)
        x0_hat = RING(x / math.sqrt(a_t), torch.full((32,), s, dtype=torch.float64))
        eps_hat = (x - math.sqrt(a_t) * x0_hat) / math.sqrt(1 - a_t)
        s_t = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        x = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev - s_t**2) * eps_hat
        if s_t > 0:
            x = x + s_t * torch.randn(x.shape, generator=zgen, dtype=x.dtype)
    x_canon = xt * math.sqrt(1 + float(sig[0]) ** 2)
    out = ddim(RING, x_canon, sig, eta=eta, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, x, rtol=1e-9, atol=1e-9)


def test_unipc_bh2_order2_predictor_is_dpmpp_2m() -> None:
    """UniP-2 with B(h) = e^h - 1 and a = 1/2 is DPM-Solver++(2M) (Zhao et al. 2023, Sec. 3.3)."""
    sig = schedules.karras(10, 0.002, 80.0)
    x = 80.0 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    a = unipc(RING, x, sig, order=2, variant="bh2", use_corrector=False)
    torch.testing.assert_close(a, dpmpp_2m(RING, x, sig), rtol=1e-12, atol=1e-12)


def test_unipc_limiter() -> None:
    """A huge limiter is plain UniPC; limiter 1 keeps order 3 stable on a coarse Karras grid
    (ring mixture, EDM range, 10 steps), where plain UniPC-3 overshoots badly."""
    g = GaussianMixture.ring()
    gen = torch.Generator().manual_seed(3)
    x = g.sample(256, generator=gen) + 80.0 * torch.randn(
        256, 2, dtype=torch.float64, generator=gen
    )
    sig = schedules.karras(10, 0.002, 80.0)
    torch.testing.assert_close(
        unipc(g, x, sig, limiter=1e12), unipc(g, x, sig), rtol=1e-9, atol=1e-9
    )
    ref = rk45(g, x, schedules.loglinear(2, 1e-4, 80.0), rtol=1e-10, atol=1e-10)
    plain = float((unipc(g, x, sig) - ref).pow(2).mean().sqrt())
    limited = float((unipc(g, x, sig, limiter=1.0) - ref).pow(2).mean().sqrt())
    assert limited < 0.5 * plain, (plain, limited)
    with pytest.raises(ValueError):
        unipc(g, x, sig, limiter=0.0)


def test_final_step_extrapolation_is_more_accurate(ode_problem: Any) -> None:
    g, x, _ = ode_problem
    sig = schedules.loglinear(40, 0.3, 20.0)  # a large last non-zero level
    ref = rk45(g, x, schedules.loglinear(2, 1e-4, 20.0), rtol=1e-11, atol=1e-11)
    for fn in (dpmpp_2m, dpmpp_3m, unipc):
        plain = float((fn(g, x, sig) - ref).pow(2).mean().sqrt())
        extra = float((fn(g, x, sig, final_step="extrapolate") - ref).pow(2).mean().sqrt())
        assert extra < 0.5 * plain


def test_bad_grid_is_rejected() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError):
        euler(RING, x, torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        heun(RING, x, torch.tensor([2.0, 1.0], dtype=torch.float64))


def test_rk45_reference_evaluates_only_inside_the_noise_range() -> None:
    """The reference solver works in log sigma: every denoiser call is at a positive sigma
    no larger than the first (the solver's trial of its first step, proposed past the end in
    sigma, used to reach sigma <= 0, outside a tabulated path's range), and its endpoint
    matches the exact ODE solution of a Gaussian: x(s) = mu + (x(s0) - mu) sqrt((v + s^2) /
    (v + s0^2)) with v the data variance, then the final step x = D(x, s_last)."""
    mu, var = 0.7, 0.3**2
    seen: list[float] = []

    def gaussian(x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        seen.extend(sigma.tolist())
        s2 = sigma.view(-1, 1) ** 2
        return mu + (x - mu) * var / (var + s2)  # E[x0 | x] for x0 ~ N(mu, var)

    grid = torch.tensor([157.4, 0.01, 0.0], dtype=torch.float64)
    x0 = torch.tensor([[3.0], [-40.0]], dtype=torch.float64) * 157.4
    out = rk45(gaussian, x0, grid, rtol=1e-10, atol=1e-10)
    assert min(seen) > 0.0 and max(seen) <= 157.4 * (1 + 1e-9)
    s_last = 0.01
    at_last = mu + (x0 - mu) * math.sqrt((var + s_last**2) / (var + 157.4**2))
    exact = mu + (at_last - mu) * var / (var + s_last**2)  # the final step x = D(x, s_last)
    torch.testing.assert_close(out, exact, rtol=1e-7, atol=1e-7)
