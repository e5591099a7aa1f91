"""`sample`: the number of denoiser calls never exceeds the NFE budget (and equals it where
the algorithm allows), names are checked, and memory does not grow with the steps."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.paths import DDPMPath
from genlab.diffusion.sample import SAMPLERS, NFEBudgetExceeded, sample

RING = GaussianMixture.ring()
NFES = [*range(1, 13), 20]


class Counter:
    """A denoiser that counts its calls and keeps weak references to its inputs."""

    def __init__(self) -> None:
        self.calls = 0
        self.inputs: list[weakref.ref[torch.Tensor]] = []
        self.sigma_min, self.sigma_max = 0.002, 80.0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        self.calls += 1
        self.inputs.append(weakref.ref(x))
        return RING(x, sigma, cond)


def _expected(name: str, nfe: int) -> int | None:
    info = SAMPLERS[name]
    if info.adaptive:
        return None
    inner = {"predictor_corrector": 1, "langevin": 2}.get(name, 1)
    return info.calls(info.steps_for(nfe, inner), inner)


OPTIONS: dict[str, dict[str, Any]] = {
    "langevin": {"n_steps_each": 2},
    "predictor_corrector": {"n_corrector": 1},
    "rk45": {"rtol": 1e-3, "atol": 1e-3},
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_calls_within_budget(name: str) -> None:
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    for nfe in NFES:
        d = Counter()
        try:
            sample(d, noise, sampler=name, nfe=nfe, options=OPTIONS.get(name),
                   generator=torch.Generator().manual_seed(1))
        except NFEBudgetExceeded as e:
            assert SAMPLERS[name].adaptive and "nfe" in str(e)
            assert d.calls == nfe
            continue
        except ValueError as e:  # a budget below the cost of one step
            assert "too small" in str(e) and SAMPLERS[name].calls(1, 2) > nfe
            continue
        assert d.calls <= nfe
        expected = _expected(name, nfe)
        if expected is not None:
            assert d.calls == expected
        if name in ("euler", "ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "ddpm"):
            assert d.calls == nfe
        if name in ("heun", "edm_stochastic"):
            assert d.calls == nfe - (1 - nfe % 2)  # 2n - 1 with n = (nfe + 1) // 2


def test_rk45_budget_error_message() -> None:
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NFEBudgetExceeded, match="rk45"):
        sample(Counter(), noise, sampler="rk45", nfe=5, options={"rtol": 1e-8, "atol": 1e-8})


def test_names_and_options_are_checked() -> None:
    noise = torch.randn(4, 2)
    with pytest.raises(ValueError, match="allowed: .*euler"):
        sample(RING, noise, sampler="eulr")
    with pytest.raises(ValueError, match="allowed: .*karras"):
        sample(RING, noise, schedule="karas")
    with pytest.raises(ValueError, match="no option etta"):
        sample(RING, noise, sampler="ddim", options={"etta": 1.0})
    with pytest.raises(ValueError, match="sigma_min"):
        sample(lambda x, s, c=None: x, noise)
    with pytest.raises(ValueError, match="path"):
        sample(RING, noise, schedule="uniform_t")


def test_schedules_paths_and_explicit_grid() -> None:
    noise = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    path = DDPMPath(schedule="scaled_linear")
    a = sample(RING, noise, sampler="ddim", nfe=10, schedule="uniform_t", path=path,
               spacing="trailing", sigma_min=path.sigma_min, sigma_max=path.sigma_max)
    assert bool(torch.isfinite(a).all())
    grid = torch.tensor([80.0, 5.0, 0.5, 0.0], dtype=torch.float64)
    b = sample(RING, noise, sampler="euler", nfe=3, schedule=grid)
    c = sample(RING, noise, sampler="euler", nfe=3, schedule="karras", rho=1e9)
    assert b.shape == c.shape
    with pytest.raises(NFEBudgetExceeded):
        sample(RING, noise, sampler="heun", nfe=3, schedule=grid)


def test_trajectory_and_flat_memory() -> None:
    noise = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x, traj = sample(RING, noise, sampler="dpmpp_3m", nfe=12, return_trajectory=True)
    assert len(traj) == 13 and torch.equal(traj[-1], x)
    for name in ("euler", "heun", "dpmpp_3m", "unipc", "ddpm", "predictor_corrector"):
        d = Counter()
        out = sample(d, noise, sampler=name, nfe=60, generator=torch.Generator().manual_seed(4))
        gc.collect()
        alive = sum(r() is not None for r in d.inputs)
        assert alive <= 4, (name, alive)  # history lives in a bounded number of locals
        del out
