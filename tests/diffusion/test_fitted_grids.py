"""`genlab.fit_grid` and explicit grids in `genlab.sample`, on exact Gaussian-mixture denoisers.

Every error here is measured against the exact PF-ODE endpoint (a tight RK45 solve of the
mixture's exact denoiser), never against numbers copied from a run.
"""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.data.gmm import GaussianMixture
from genlab.diffusion.fitted import fit_grid_result
from genlab.diffusion.grid_objectives import GRID_OBJECTIVES, per_sample_error
from genlab.diffusion.grid_search import pilot_noise, pilot_reference
from genlab.diffusion.multistep import dpmpp_2m
from genlab.diffusion.sample import NFEBudgetExceeded
from genlab.diffusion.schedules import karras


@pytest.fixture(scope="module")
def ring() -> GaussianMixture:
    return GaussianMixture.ring()


def _pilot_rmse(
    g: GaussianMixture, grid: torch.Tensor, x: torch.Tensor, ref: torch.Tensor
) -> float:
    return float(per_sample_error(dpmpp_2m(g, x, grid), ref).pow(2).mean().sqrt())


def test_fit_grid_is_a_grid_no_worse_than_karras(ring: GaussianMixture) -> None:
    """A valid grid (strictly decreasing, endpoints kept, final 0) whose error on the
    held-out quarter of its pilot batch, recomputed here from scratch, is at most Karras
    rho = 7's at the same NFE; with holdout 0 the same holds on the whole pilot."""
    for holdout, judged in ((0.25, slice(36, None)), (0.0, slice(None))):
        fit = fit_grid_result(ring, sampler="dpmpp_2m", nfe=6, shape=(2,), pilot_size=48,
                              max_evals=30, dtype=torch.float64, holdout=holdout)  # fmt: skip
        grid = fit.grid
        assert grid.dtype == torch.float64 and grid.shape == (7,)
        assert grid[-1] == 0 and bool((grid[1:] < grid[:-1]).all())
        assert math.isclose(float(grid[0]), 80.0) and math.isclose(float(grid[-2]), 0.002)
        x = 80.0 * pilot_noise((2,), 48, 0, torch.float64)[judged]  # the same pilot batch
        ref = pilot_reference(ring, x, 80.0, 0.002)
        fitted = _pilot_rmse(ring, grid, x, ref)
        plain = _pilot_rmse(ring, karras(6, 0.002, 80.0), x, ref)
        assert fitted <= plain * (1 + 1e-9)
        assert math.isclose(fit.loss, fitted, rel_tol=1e-5)
        assert math.isclose(fit.karras_loss, plain, rel_tol=1e-5)
        assert fit.calls > 0 and fit.settings["sampler"] == "dpmpp_2m"
        assert fit.settings["nfe"] == 6 and fit.settings["holdout"] == holdout


def test_fitted_grid_generalises_to_fresh_noise(ring: GaussianMixture) -> None:
    """Fitted on one pilot batch, the grid also beats Karras on independent noise (the
    evaluation noise is never the pilot's)."""
    grid = genlab.fit_grid(ring, sampler="dpmpp_2m", nfe=6, shape=(2,), pilot_size=64,
                           max_evals=40, dtype=torch.float64)  # fmt: skip
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = pilot_reference(ring, 80.0 * noise, 80.0, 0.002)
    out = genlab.sample(ring, noise, sampler="dpmpp_2m", nfe=6, schedule=grid)
    base = genlab.sample(ring, noise, sampler="dpmpp_2m", nfe=6, schedule="karras")
    assert per_sample_error(out, ref).pow(2).mean() < per_sample_error(base, ref).pow(2).mean()


def test_pilot_noise_is_never_the_sampling_noise() -> None:
    pilot = pilot_noise((3,), 8, 0)
    same_seed = torch.randn((8, 3), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(pilot, same_seed)
    assert torch.equal(pilot, pilot_noise((3,), 8, 0))  # reproducible
    assert not torch.equal(pilot, pilot_noise((3,), 8, 1))


def test_explicit_grid_needs_no_sigma_range(ring: GaussianMixture) -> None:
    """A denoiser without sigma attributes samples on an explicit grid, whose first level
    scales the noise: one Euler step 80 -> 0 is x = D(80 z, 80) exactly."""

    def bare(x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return ring(x, sigma, cond)

    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = torch.tensor([80.0, 0.0], dtype=torch.float64)
    out = genlab.sample(bare, noise, sampler="euler", nfe=1, schedule=grid)
    sig = torch.full((16,), 80.0, dtype=torch.float64)
    torch.testing.assert_close(out, ring(80.0 * noise, sig))
    with pytest.raises(ValueError, match="pass sigma_min and sigma_max"):
        genlab.sample(bare, noise, sampler="euler", nfe=1, schedule="karras")
    with pytest.raises(NFEBudgetExceeded):  # the grid has 5 steps: over a budget of 3
        genlab.sample(bare, noise, sampler="euler", nfe=3, schedule=karras(5, 0.002, 80.0))
    with pytest.raises(ValueError, match="strictly decreasing"):
        genlab.sample(bare, noise, schedule=torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))


def test_schedule_fitted_in_sample(ring: GaussianMixture) -> None:
    """schedule="fitted" fits on fresh pilot noise and samples within the budget."""
    noise = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    calls = []

    def counted(x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        calls.append(x.shape[0])
        return ring(x, sigma, cond)

    counted.sigma_min, counted.sigma_max = 0.002, 80.0  # type: ignore[attr-defined]
    out = genlab.sample(counted, noise, sampler="euler", nfe=3, schedule="fitted")
    assert out.shape == (32, 2) and torch.isfinite(out).all()
    assert calls[-3:] == [32, 32, 32] and all(c in (256, 192, 64) for c in calls[:-3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sampler": "ddpm"}, "deterministic"), ({"sampler": "rk45"}, "deterministic"),
     ({"sampler": "nope"}, "unknown sampler"), ({"objective": "mean"}, "unknown grid objective"),
     ({"nfe": 0}, "too small"), ({"shape": None}, "pass shape"),
     ({"options": {"rho": 2}}, "no option rho")],
)  # fmt: skip
def test_fit_grid_refuses_bad_input(ring: GaussianMixture, kwargs: dict, match: str) -> None:
    args = {"sampler": "euler", "nfe": 4, "shape": (2,), **kwargs}
    with pytest.raises(ValueError, match=match):
        genlab.fit_grid(ring, **args)


def test_objectives_by_hand() -> None:
    e = torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=torch.float64)
    assert math.isclose(float(GRID_OBJECTIVES["rmse"](e)), math.sqrt(3.0))
    assert math.isclose(float(GRID_OBJECTIVES["max"](e)), 3.0)
    assert math.isclose(float(GRID_OBJECTIVES["tail"](e)), math.sqrt(3.0) + 21.0**0.25)
    out = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    torch.testing.assert_close(
        per_sample_error(out, torch.zeros(2, 2)),
        torch.tensor([math.sqrt(2.5), 0.0], dtype=torch.float64),
    )


def _mixture_cdf(g: GaussianMixture, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """CDF (B,) of the 1-D mixture noised to sigma at x (B, 1)."""
    scale = (g.stds[:, 0] ** 2 + sigma**2).sqrt()  # (K,)
    return (g.weights * torch.special.ndtr((x - g.means[:, 0]) / scale)).sum(1)


def _transport(g: GaussianMixture, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact PF-ODE endpoints of x (B, 1) at sigma: in 1-D the flow keeps each trajectory's
    quantile, x(0) = F_0^{-1}(F_sigma(x)) (bisection to float64 precision)."""
    u = _mixture_cdf(g, x, sigma)
    lo, hi = torch.full_like(x, -10.0), torch.full_like(x, 10.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = _mixture_cdf(g, mid, 0.0) < u
        lo, hi = torch.where(below[:, None], mid, lo), torch.where(below[:, None], hi, mid)
    return 0.5 * (lo + hi)


def test_tail_objective_holds_where_trajectories_switch_component() -> None:
    """Two components (-2 with weight 0.7, +2 with 0.3, std 0.3): trajectories started near the
    separatrix end in the gap between them, where a small error puts them in the other
    component. A grid fitted on the tail of the pilot errors (objective "tail") beats the
    plain RMSE fit on exactly those trajectories (exact endpoints by quantile transport)."""
    g = GaussianMixture(torch.tensor([[-2.0], [2.0]]), 0.3, torch.tensor([0.7, 0.3]))
    s_max, s_min = 80.0, 0.002
    lo, hi = torch.tensor([[-300.0]]), torch.tensor([[300.0]])  # start of the separatrix
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        left = bool(_mixture_cdf(g, mid.double(), s_max) < _mixture_cdf(g, torch.zeros(1, 1), 0))
        lo, hi = (mid, hi) if left else (lo, mid)
    delta = torch.logspace(-4, 0, 12, dtype=torch.float64)[:, None]  # (12, 1)
    x = torch.cat([lo.double() - delta, lo.double() + delta])  # (24, 1) near the separatrix
    exact = _transport(g, x, s_max)
    torch.testing.assert_close(pilot_reference(g, x[:4], s_max, s_min), exact[:4], atol=1e-4,
                               rtol=1e-4)  # fmt: skip
    assert bool((exact < -1).any() and (exact > 1).any())  # both components are reached
    kw = {"sampler": "unipc", "nfe": 10, "options": {"final_step": "extrapolate"},
          "shape": (1,), "sigma_min": s_min, "sigma_max": s_max, "dtype": torch.float64,
          "max_evals": 40}  # fmt: skip
    errors = {}
    for objective in ("rmse", "tail"):
        grid = genlab.fit_grid(g, objective=objective, **kw)
        out = genlab.sample(g, x / s_max, sampler="unipc", nfe=10, schedule=grid,
                            options=kw["options"])  # fmt: skip
        errors[objective] = float((out - exact).pow(2).mean().sqrt())
    assert errors["tail"] < errors["rmse"], errors
