"""diffusers models as genlab denoisers, and diffusers' grids as genlab grids.

A diffusers UNet of a DDPM-type (discrete variance-preserving) scheduler is trained on
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at the integer steps t = 0..K-1 (Ho et al.
2020, eq. 4) and predicts eps ("epsilon"), v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0
("v_prediction", Salimans & Ho 2022, Sec. 4) or x0 ("sample"). In genlab's canonical
coordinates x = x_t / sqrt(abar_t) = x0 + s eps, s_t = sqrt((1 - abar_t) / abar_t), this
model is a `TabulatedDDPMPath` over the scheduler's own (float32) ``alphas_cumprod`` with
genlab's eps / v / x0 parameterization: :class:`DiffusersDenoiser` is a `genlab.Denoiser`
over exactly those (no conversion formula of its own), so every genlab sampler, grid,
guidance wrapper and `genlab.log_prob` runs on a diffusers model.

Only the model-defining part of the scheduler config is read: the betas (``beta_schedule``,
``beta_start``/``beta_end``, ``trained_betas``, ``rescale_betas_zero_snr``),
``num_train_timesteps`` and ``prediction_type``. Its sampling settings (spacing, offset,
Karras sigmas, final sigma) describe a grid, which :func:`scheduler_grid` reproduces from
the scheduler itself. ``clip_sample`` / ``thresholding`` are sampling choices of the
scheduler and are not applied (``clip_denoised`` clamps x0_hat instead, see below).

Conditioning: ``cond`` is handed to the UNet as ``class_labels`` (an integer tensor (B,)),
``encoder_hidden_states`` (a float tensor (B, L, E)) or as keyword arguments (a dict, e.g.
both of them, or ``added_cond_kwargs``). Classifier-free guidance takes the null condition
of either (`genlab.diffusion.guidance.ClassifierFreeGuidance`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.parameterization import EpsParam, Parameterization, VParam, X0Param
from genlab.diffusion.paths import DDPMPath, TabulatedDDPMPath
from genlab.diffusion.schedules import check_grid
from genlab.errors import ConfigError

__all__ = ["PREDICTIONS", "DiffusersDenoiser", "scheduler_grid", "timesteps_grid", "unet_kwargs"]

# diffusers' prediction_type -> genlab's parameterization (the only place formulas live).
PREDICTIONS: dict[str, type[Parameterization]] = {
    "epsilon": EpsParam,
    "v_prediction": VParam,
    "sample": X0Param,
}
ZERO_SNR_ALPHA_CUMPROD = 2.0**-24  # diffusers' multistep schedulers' stand-in for abar = 0


def _config(scheduler: Any) -> dict[str, Any]:
    """The config of a diffusers scheduler, or the mapping itself (its ``config``)."""
    cfg = scheduler if isinstance(scheduler, Mapping) else getattr(scheduler, "config", None)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"scheduler: expected a diffusers scheduler or its config, got "
                          f"{type(scheduler).__name__}")  # fmt: skip
    return dict(cfg)


def _alphas_cumprod(scheduler: Any, cfg: dict[str, Any]) -> Tensor:
    """The scheduler's float32 abar_0..abar_{K-1} as float64 (K,), built by diffusers' own
    beta code. A zero terminal value (``rescale_betas_zero_snr``: infinite noise level)
    becomes diffusers' multistep stand-in 2^-24 where that stays below abar_{K-2}, else the
    log-linear continuation abar_{K-2}^2 / abar_{K-3}, so that the levels still increase."""
    table = getattr(scheduler, "alphas_cumprod", None)
    if table is None:
        if "num_train_timesteps" not in cfg or "beta_schedule" not in cfg:
            raise ConfigError("scheduler: not a DDPM-type scheduler config (needs "
                              "num_train_timesteps and beta_schedule)")  # fmt: skip
        try:
            from diffusers import DDPMScheduler
        except ImportError as exc:
            raise ConfigError("a scheduler config needs diffusers: pip install "
                              "'genlab[diffusers]'") from exc  # fmt: skip
        table = DDPMScheduler.from_config(cfg).alphas_cumprod
    abar = torch.as_tensor(table).detach().to("cpu", torch.float64).clone()  # (K,)
    if abar.numel() > 2 and abar[-1] == 0:
        abar[-1] = min(ZERO_SNR_ALPHA_CUMPROD, float(abar[-2] ** 2 / abar[-3]))
    return abar


def _parameterization(cfg: dict[str, Any]) -> Parameterization:
    pred = cfg.get("prediction_type", "epsilon")
    if pred not in PREDICTIONS:
        raise ConfigError(f"scheduler.prediction_type: {pred!r} is not a DDPM-type prediction "
                          f"(allowed: {', '.join(sorted(PREDICTIONS))})")  # fmt: skip
    if cfg.get("use_flow_sigmas"):
        raise ConfigError("scheduler.use_flow_sigmas: a flow-matching schedule is not a DDPM "
                          "path (wrap the model as a flow-matching denoiser instead)")  # fmt: skip
    return PREDICTIONS[pred]()


def unet_kwargs(cond: Any) -> dict[str, Any]:
    """The keyword arguments of a diffusers UNet for a genlab ``cond``: None -> none, a dict
    -> itself, an integer tensor -> ``class_labels``, a float tensor ->
    ``encoder_hidden_states``."""
    if cond is None:
        return {}
    if isinstance(cond, Mapping):
        return dict(cond)
    if isinstance(cond, Tensor):
        key = "encoder_hidden_states" if cond.is_floating_point() else "class_labels"
        return {key: cond}
    raise ValueError(f"cond: expected None, a tensor or a dict of UNet keywords, got "
                     f"{type(cond).__name__}")  # fmt: skip


class UNetCall(nn.Module):
    """``net(x_t, t, cond)`` of a diffusers UNet: its ``.sample`` output, without the
    variance channels of a learned-variance model (out_channels = 2 in_channels)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        config = getattr(unet, "config", {})
        c_in, c_out = config.get("in_channels"), config.get("out_channels")
        self.keep = c_in if c_in is not None and c_out == 2 * c_in else None

    def forward(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        out = self.unet(x_t, t, **unet_kwargs(cond))
        out = getattr(out, "sample", out)  # (B, C_out, H, W)
        return out if self.keep is None else out[:, : self.keep]  # (B, C, H, W)


class DiffusersDenoiser(Denoiser):
    """A diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` and its DDPM-type scheduler
    (or the scheduler's config) as the canonical denoiser ``D(x, sigma, cond) -> x0_hat``.

    ``self.path`` is the `TabulatedDDPMPath` of the scheduler's ``alphas_cumprod`` and
    ``sigma_min``/``sigma_max`` its noise levels at t = 0 and t = K - 1, the range the UNet
    was trained on. ``time_input`` is the path's policy for the UNet's time input between
    integer steps (``nearest`` by default: grid points given in float32 hit their integer
    step exactly; ``round`` as diffusers' multistep schedulers with Karras sigmas;
    ``continuous``). ``clip_denoised=r`` clamps x0_hat to [-r, r] (None: no clamp), the
    denoiser-level form of diffusers' ``clip_sample`` (DDIMScheduler with
    ``use_clipped_model_output=True``).

    Sampling on the scheduler's own grid::

        D = DiffusersDenoiser(unet, scheduler)
        x = genlab.sample(D, noise, sampler="dpmpp_2m", nfe=10,
                          schedule=scheduler_grid(scheduler, 10))
    """

    def __init__(
        self,
        unet: nn.Module,
        scheduler: Any,
        *,
        time_input: str = "nearest",
        clip_denoised: float | None = None,
    ) -> None:
        cfg = _config(scheduler)
        param = _parameterization(cfg)
        abar = _alphas_cumprod(scheduler, cfg)
        try:
            path = TabulatedDDPMPath(table=tuple(abar.tolist()), time_input=time_input)
        except ValueError as exc:
            raise ConfigError(f"scheduler: {exc}") from exc
        if clip_denoised is not None and not clip_denoised > 0:
            raise ConfigError(f"clip_denoised must be positive or None, got {clip_denoised}")
        super().__init__(UNetCall(unet), path, param)
        self.scheduler_config = cfg
        self.clip_denoised = clip_denoised

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        d = super().forward(x, sigma, cond)  # (B, C, H, W)
        if self.clip_denoised is None:
            return d
        return d.clamp(-self.clip_denoised, self.clip_denoised)


def timesteps_grid(path: DDPMPath, timesteps: Tensor | list[int], final: float = 0.0) -> Tensor:
    """The genlab grid of integer ``timesteps`` (decreasing) of a discrete path: their noise
    levels ``path.noise_levels[t]``, then ``final`` (when 0 < final < the last level; e.g.
    the level of t = 0 where diffusers stops short of 0), then 0."""
    ts = torch.as_tensor(timesteps).to("cpu")
    if ts.is_floating_point():
        if not bool(torch.all(ts == ts.round())):
            raise ValueError("timesteps_grid: timesteps must be integers")
        ts = ts.long()
    if ts.numel() and not bool((ts >= 0).all() and (ts < path.num_steps).all()):
        raise ValueError(f"timesteps_grid: timesteps must lie in 0..{path.num_steps - 1}")
    levels = path.noise_levels.to(torch.float64)[ts]  # (n,)
    return _with_final(levels, final)


def _with_final(levels: Tensor, final: float) -> Tensor:
    """levels, then ``final`` if it lies strictly between 0 and the last level, then 0."""
    tail = [final, 0.0] if 0.0 < final < float(levels[-1]) else [0.0]
    grid = torch.cat([levels.to(torch.float64), torch.tensor(tail, dtype=torch.float64)])
    check_grid(grid)
    return grid


def scheduler_grid(scheduler: Any, num_inference_steps: int) -> Tensor:
    """The noise levels at which a diffusers scheduler evaluates the model in
    ``num_inference_steps`` steps, as a genlab grid (float64, ending with 0).

    The scheduler itself is asked (``set_timesteps`` on a copy), so its spacing
    (leading / trailing / linspace), ``steps_offset``, Karras / exponential / beta sigmas,
    ``lambda_min_clipped`` and final sigma are all its own. Schedulers that keep ``sigmas``
    (DPMSolverMultistep, UniPC, Euler, DEIS, ...) give their float32 sigmas; DDIM and DDPM,
    which keep only timesteps, give the levels of those timesteps on the scheduler's table.

    Where diffusers stops short of 0 (``final_sigmas_type="sigma_min"``, DDIM's
    ``set_alpha_to_one=False``) the grid has one more step, to 0; the state before that
    step (``return_trajectory``) is then what diffusers returns, divided by sqrt(abar).
    Two differences are diffusers' own: DDIMScheduler always steps to t - K // n, which is
    not its next timestep for ``linspace`` (or ``trailing`` with n not dividing K), where
    genlab steps to the next timestep; and its multistep schedulers round the timesteps of
    Karras sigmas (``DiffusersDenoiser(time_input="round")`` does the same).
    """
    sch = copy.deepcopy(scheduler)
    try:
        sch.set_timesteps(num_inference_steps)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"scheduler_grid: {type(scheduler).__name__} cannot set "
                          f"{num_inference_steps} steps: {exc}") from exc  # fmt: skip
    sigmas = getattr(sch, "sigmas", None)
    try:
        if sigmas is not None and len(sigmas) == len(sch.timesteps) + 1:
            sig = torch.as_tensor(sigmas).to("cpu", torch.float64)  # (n + 1,)
            return _with_final(sig[:-1], float(sig[-1]))
        path = TabulatedDDPMPath(table=tuple(_alphas_cumprod(sch, _config(sch)).tolist()))
        final_abar = float(getattr(sch, "final_alpha_cumprod", 1.0))
        final = ((1.0 - final_abar) / final_abar) ** 0.5
        return timesteps_grid(path, sch.timesteps, final)
    except ValueError as exc:
        raise ConfigError(f"scheduler_grid: the steps of {type(scheduler).__name__} are not a "
                          f"grid of one evaluation per level ({exc})") from exc  # fmt: skip
