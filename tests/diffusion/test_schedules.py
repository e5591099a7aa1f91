"""Grids: monotone, float64, exact endpoints, ending in 0; DDIM timesteps; uniform_t inverts
the path's noise level; fitted grids improve on their starting grid."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.diffusion import schedules
from genlab.diffusion.paths import PATHS, DDPMPath


def _check(sig: torch.Tensor, n: int) -> None:
    assert sig.dtype == torch.float64 and sig.shape == (n + 1,)
    assert float(sig[-1]) == 0.0
    assert bool((sig[1:] < sig[:-1]).all())
    schedules.check_grid(sig)


@pytest.mark.parametrize("n", [1, 2, 5, 33])
@pytest.mark.parametrize("fn", [schedules.karras, schedules.loglinear])
def test_sigma_grids(fn: object, n: int) -> None:
    sig = fn(n, 0.002, 80.0)  # type: ignore[operator]
    _check(sig, n)
    assert float(sig[0]) == 80.0
    if n > 1:
        assert float(sig[-2]) == 0.002


def test_karras_formula_and_loglinear_spacing() -> None:
    sig = schedules.karras(10, 0.002, 80.0, rho=7.0)
    i = torch.arange(10, dtype=torch.float64)
    expected = (80.0 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    torch.testing.assert_close(sig[:-1], expected, rtol=1e-13, atol=0)
    gaps = torch.diff(torch.log(schedules.loglinear(10, 0.01, 10.0)[:-1]))
    torch.testing.assert_close(gaps, torch.full_like(gaps, math.log(1e-3) / 9))
    torch.testing.assert_close(
        schedules.karras(7, 0.5, 3.0, rho=1.0)[:-1],
        torch.linspace(3.0, 0.5, 7, dtype=torch.float64),
    )


def test_ddim_timesteps() -> None:
    assert schedules.ddim_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    assert schedules.ddim_timesteps(1000, 10, "trailing").tolist() == list(range(999, 0, -100))
    lin = schedules.ddim_timesteps(1000, 10, "linspace").tolist()
    assert lin[0] == 999 and lin[-1] == 0 and lin == sorted(lin, reverse=True)
    assert schedules.ddim_timesteps(1000, 3, "trailing").tolist() == [999, 666, 332]
    with pytest.raises(ValueError, match="allowed"):
        schedules.ddim_timesteps(1000, 10, "middle")


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_uniform_t_on_ddpm_path(spacing: str) -> None:
    path = DDPMPath(schedule="scaled_linear")
    sig = schedules.uniform_t(path, 10, spacing=spacing)
    _check(sig, 10)
    ts = schedules.ddim_timesteps(1000, 10, spacing)
    torch.testing.assert_close(sig[:-1], path.noise_levels[ts])
    torch.testing.assert_close(path.t_from_noise(sig[:-1]), ts.double(), rtol=0, atol=1e-8)
    if spacing != "leading":
        assert float(sig[0]) == pytest.approx(14.6146, abs=1e-4)  # the SD sigma_max


@pytest.mark.parametrize("name", sorted(PATHS))
def test_uniform_t_is_uniform_in_t(name: str) -> None:
    path = PATHS[name]()
    sig = schedules.uniform_t(path, 12)
    _check(sig, 12)
    assert float(sig[0]) == pytest.approx(path.sigma_max, rel=1e-9)
    assert float(sig[-2]) == pytest.approx(path.sigma_min, rel=1e-9)
    if name != "ddpm":  # ddpm: integer timesteps, checked above
        t = path.t_from_noise(sig[:-1])
        gaps = torch.diff(t)
        torch.testing.assert_close(
            gaps, torch.full_like(gaps, float(gaps.mean())), rtol=1e-7, atol=1e-9
        )
    for spacing in ("leading", "trailing"):
        _check(schedules.uniform_t(path, 12, spacing=spacing), 12)


def test_bad_grids_raise() -> None:
    with pytest.raises(ValueError):
        schedules.karras(0, 0.1, 1.0)
    with pytest.raises(ValueError):
        schedules.loglinear(4, 2.0, 1.0)
    with pytest.raises(ValueError):
        schedules.check_grid(torch.tensor([3.0, 1.0, 2.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        schedules.check_grid(torch.tensor([3.0, 1.0], dtype=torch.float64))


def test_grid_table() -> None:
    assert {"karras", "loglinear", "uniform_t"} <= set(schedules.GRIDS)
    for fn in schedules.GRIDS.values():
        assert callable(fn) and fn.__doc__


def test_make_grid_dispatches_by_name_and_checks_once() -> None:
    """A name goes through `GRIDS` to its family with that family's knobs; a tensor is only
    checked; an unknown name or a missing path is one ValueError."""
    path = DDPMPath()
    cases = {
        "karras": schedules.karras(6, 0.01, 10.0, 3.0),
        "loglinear": schedules.loglinear(6, 0.01, 10.0),
        "uniform_t": schedules.uniform_t(
            path, 6, spacing="trailing", sigma_min=0.01, sigma_max=10.0
        ),  # fmt: skip
    }
    for name, expected in cases.items():
        got = schedules.make_grid(name, 6, 0.01, 10.0, rho=3.0, path=path, spacing="trailing")
        assert torch.equal(got, expected)
    explicit = torch.tensor([2.0, 1.0, 0.0])
    assert torch.equal(schedules.make_grid(explicit, 0, 0.0, 0.0), explicit.double())
    with pytest.raises(ValueError, match="unknown schedule 'karas'; allowed: karras, loglinear"):
        schedules.make_grid("karas", 6, 0.01, 10.0)
    with pytest.raises(ValueError, match="needs a path"):
        schedules.make_grid("uniform_t", 6, 0.01, 10.0)
    with pytest.raises(ValueError, match="finite"):
        schedules.make_grid(torch.tensor([math.inf, 1.0, 0.0]), 2, 0.01, 10.0)
    assert schedules.grid_values(explicit) == [2.0, 1.0, 0.0]


def test_warped_karras_without_warp_is_karras() -> None:
    """c = 0 is Karras et al. (2022), Eq. 5 (fitted grids: tests/diffusion/test_fitted_grids.py)."""
    from genlab.diffusion.grid_search import warped_karras

    torch.testing.assert_close(
        warped_karras(6, 0.002, 80.0, 7.0, [0.0, 0.0]), schedules.karras(6, 0.002, 80.0)
    )
