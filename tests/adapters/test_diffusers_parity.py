"""genlab's samplers on a diffusers UNet reproduce diffusers' schedulers from the same noise.

Each diffusers scheduler runs its own loop (``set_timesteps``, ``scale_model_input``,
``step``) on a tiny random-weight UNet2DModel; genlab runs its sampler through
`DiffusersDenoiser` on `scheduler_grid` (the scheduler's own timesteps and sigmas), from
the same initial noise mapped to canonical coordinates. The two are the same algorithm, so
they agree to float32 round-off: the worst relative difference over these cases is below
1e-6 (asserted at 4e-6, about 32 float32 ulps, of the largest entry of the result).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)
from diffusers_models import noise
from torch import Tensor

import genlab
from genlab.adapters.diffusers import DiffusersDenoiser, scheduler_grid
from genlab.diffusion.schedules import uniform_t

ROUND_OFF = 4e-6  # relative to the largest entry of the result


@torch.no_grad()
def diffusers_loop(unet: UNet2DModel, scheduler: Any, n: int, x_t: Tensor, **step: Any) -> Tensor:
    """diffusers' own sampling loop from the standard normal ``x_t``."""
    scheduler.set_timesteps(n)
    x = x_t * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t).sample  # (B, 1, 8, 8)
        x = scheduler.step(out, t, x, **step).prev_sample
    return x


@torch.no_grad()
def genlab_run(
    denoiser: DiffusersDenoiser, grid: Tensor, sampler: str, x_t: Tensor, *,
    start: Tensor | None = None, **kwargs: Any,
) -> Any:  # fmt: skip
    """genlab.sample from the canonical state of diffusers' start x_T: x = x_T / sqrt(abar_T)
    = x_T sqrt(1 + s^2) for schedulers stepping x_t, or ``start`` (Euler's x0 + s eps)."""
    s0 = float(grid[0])
    x = x_t * (1.0 + s0**2) ** 0.5 if start is None else start
    nfe = len(grid) - 1
    return genlab.sample(denoiser, x / s0, sampler=sampler, nfe=nfe, schedule=grid, **kwargs)


def rel_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(("spacing", "offset"), [("leading", 0), ("leading", 1), ("trailing", 0)])
def test_ddim_reproduces_ddim_scheduler(unet: UNet2DModel, spacing: str, offset: int) -> None:
    sch = DDIMScheduler(clip_sample=False, timestep_spacing=spacing, steps_offset=offset)
    x_t = noise()
    ref = diffusers_loop(unet, sch, 10, x_t, eta=0.0)
    grid = scheduler_grid(sch, 10)
    assert rel_diff(genlab_run(DiffusersDenoiser(unet, sch), grid, "ddim", x_t), ref) < ROUND_OFF


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_uniform_t_grid_has_ddim_timesteps(unet: UNet2DModel, spacing: str) -> None:
    """genlab's own uniform_t grid on the adapter's path is DDIMScheduler's, level for level."""
    for n in (7, 10, 50):
        sch = DDIMScheduler(timestep_spacing=spacing)
        path = DiffusersDenoiser(unet, sch).path
        assert torch.equal(uniform_t(path, n, spacing=spacing), scheduler_grid(sch, n))


def test_ddim_stopping_short_of_zero(unet: UNet2DModel) -> None:
    """set_alpha_to_one=False (Stable Diffusion's setting) ends at the level of t = 0: the
    grid has one more step, and the state before it is diffusers' result / sqrt(abar_0)."""
    sch = DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    x_t = noise()
    ref = diffusers_loop(unet, sch, 10, x_t)
    grid = scheduler_grid(sch, 10)
    assert len(grid) == 12 and grid[-2] == DiffusersDenoiser(unet, sch).path.noise_levels[0]
    _, traj = genlab_run(DiffusersDenoiser(unet, sch), grid, "ddim", x_t, return_trajectory=True)
    abar0 = float(sch.alphas_cumprod[0])
    assert rel_diff(traj[-2] * abar0**0.5, ref) < ROUND_OFF


def test_clipped_ddim(unet: UNet2DModel) -> None:
    """clip_denoised is DDIM's clip_sample with the eps re-derived from the clipped x0."""
    sch = DDIMScheduler(clip_sample=True, timestep_spacing="trailing")
    x_t = noise()
    ref = diffusers_loop(unet, sch, 10, x_t, use_clipped_model_output=True)
    d = DiffusersDenoiser(unet, sch, clip_denoised=1.0)
    out = genlab_run(d, scheduler_grid(sch, 10), "ddim", x_t)
    assert out.abs().max() <= 1.0
    assert rel_diff(out, ref) < ROUND_OFF


@pytest.mark.parametrize(
    ("spacing", "karras", "n"),
    [("linspace", False, 10), ("leading", False, 10), ("trailing", False, 20),
     ("linspace", True, 10)],
)  # fmt: skip
def test_dpmpp_2m_reproduces_dpm_solver(
    unet: UNet2DModel, spacing: str, karras: bool, n: int
) -> None:
    """DPMSolverMultistep, algorithm dpmsolver++, order 2, lower_order_final, final sigma 0.
    With Karras sigmas diffusers rounds the UNet's timesteps: time_input="round"."""
    sch = DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=spacing,
        use_karras_sigmas=karras,
    )  # fmt: skip
    x_t = noise()
    ref = diffusers_loop(unet, sch, n, x_t)
    d = DiffusersDenoiser(unet, sch, time_input="round" if karras else "nearest")
    assert rel_diff(genlab_run(d, scheduler_grid(sch, n), "dpmpp_2m", x_t), ref) < ROUND_OFF


@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_3m_reference_variant_reproduces_dpm_solver_order_3(
    unet: UNet2DModel, karras: bool
) -> None:
    """DPMSolverMultistep, dpmsolver++, order 3 at 16 steps (>= 15: no lower orders but the
    last step to sigma 0, as genlab's final step), solver_type "heun" (its second-order warm
    start step in Taylor form, as genlab's and k-diffusion's; "midpoint" halves that step's
    derivative term): genlab's dpmpp_3m(variant="dpm-solver"). The default variant takes the
    whole curvature term and differs."""
    sch = DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=3, solver_type="heun",
        use_karras_sigmas=karras,
    )  # fmt: skip
    x_t = noise()
    ref = diffusers_loop(unet, sch, 16, x_t)
    d = DiffusersDenoiser(unet, sch, time_input="round" if karras else "nearest")
    grid = scheduler_grid(sch, 16)
    out = genlab_run(d, grid, "dpmpp_3m", x_t, options={"variant": "dpm-solver"})
    assert rel_diff(out, ref) < ROUND_OFF
    assert rel_diff(genlab_run(d, grid, "dpmpp_3m", x_t), ref) > 100 * ROUND_OFF


@pytest.mark.parametrize("karras", [False, True])
def test_unipc_order_2_reproduces_unipc_scheduler(unet: UNet2DModel, karras: bool) -> None:
    sch = UniPCMultistepScheduler(solver_order=2, solver_type="bh2", use_karras_sigmas=karras)
    x_t = noise()
    ref = diffusers_loop(unet, sch, 10, x_t)
    d = DiffusersDenoiser(unet, sch, time_input="round" if karras else "nearest")
    out = genlab_run(d, scheduler_grid(sch, 10), "unipc", x_t, options={"order": 2})
    assert rel_diff(out, ref) < ROUND_OFF


@pytest.mark.parametrize("karras", [False, True])
def test_euler_reproduces_euler_scheduler(unet: UNet2DModel, karras: bool) -> None:
    """EulerDiscrete steps x = x0 + s eps itself; Karras timesteps stay fractional there."""
    sch = EulerDiscreteScheduler(use_karras_sigmas=karras, timestep_spacing="leading")
    x_t = noise()
    ref = diffusers_loop(unet, sch, 10, x_t)
    d = DiffusersDenoiser(unet, sch, time_input="continuous" if karras else "nearest")
    start = x_t * sch.init_noise_sigma  # set by the loop's set_timesteps
    out = genlab_run(d, scheduler_grid(sch, 10), "euler", x_t, start=start)
    assert rel_diff(out, ref) < ROUND_OFF
