"""Stochastic samplers in canonical coordinates x = x0 + sigma * eps (Karras et al. 2022).

Same signature as the deterministic samplers in :mod:`genlab.diffusion.samplers`; noise
is drawn only through ``torch.randn(..., generator=generator)``. In these coordinates
the forward process is the VE SDE dx = sqrt(d sigma^2 / dt) dW, score = (D - x)/sigma^2.
Every sampler ends with the denoising step x = D(x, sigma_last) onto sigma = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from genlab.diffusion.samplers import (
    Callback,
    DenoiserFn,
    ddim,
    ddim_coefficients,
    denoise,
    noise_like,
    sigma_batch,
)
from genlab.diffusion.schedules import grid_values


def ddpm(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Ancestral DDPM sampling, Ho et al. (2020), Alg. 2, on an arbitrary grid.

    Draws x' from the posterior q(x' | x, x0 = D): in canonical coordinates its mean is
    D + (s'/s)^2 (x - D) and its std (s'/s) sqrt(s^2 - s'^2) (Ho et al. Eq. 6-7 with
    abar = 1/(1 + s^2)). This is exactly DDIM with eta = 1, so it is computed by `ddim`
    (one implementation of the update). One denoiser call per step.
    """
    return ddim(denoiser, x, sigmas, cond=cond, generator=generator, callback=callback, eta=1.0)


def euler_ancestral(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Euler ancestral: a deterministic Euler step to sigma_down, then fresh noise sigma_up.

    sigma_up = eta (s'/s) sqrt(s^2 - s'^2), sigma_down = sqrt(s'^2 - sigma_up^2) (the
    ancestral split of DDIM, Song et al. 2021 Eq. 16, as used by Karras et al. 2022 Sec. 4).
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        _, sigma_up = ddim_coefficients(s[i], s[i + 1], eta)
        sigma_down = math.sqrt(max(s[i + 1] ** 2 - sigma_up**2, 0.0))
        x = x + (sigma_down - s[i]) * ((x - d) / s[i])
        if sigma_up > 0.0:
            x = x + (sigma_up * s_noise) * noise_like(x, generator)
    return x


def edm_stochastic(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    s_churn: float = 40.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
) -> Tensor:
    """EDM stochastic sampler, Karras et al. (2022), Alg. 2 (churn + Heun).

    gamma_i = min(S_churn / n, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax], else 0;
    sigma_hat = sigma_i (1 + gamma_i); x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise z;
    then a Heun step sigma_hat -> sigma_{i+1} (Euler for the last step): 2n - 1 calls.
    """
    s = grid_values(sigmas)
    n = len(s) - 1
    for i in range(n):
        gamma = min(s_churn / n, math.sqrt(2.0) - 1.0) if s_tmin <= s[i] <= s_tmax else 0.0
        s_hat = s[i] * (1.0 + gamma)
        if gamma > 0.0:
            x = x + (math.sqrt(s_hat**2 - s[i] ** 2) * s_noise) * noise_like(x, generator)
        d = denoise(denoiser, x, s_hat, cond, i, callback)
        slope = (x - d) / s_hat
        x_next = x + (s[i + 1] - s_hat) * slope
        if s[i + 1] != 0.0:
            d2 = denoiser(x_next, sigma_batch(s[i + 1], x), cond)
            x_next = x + (s[i + 1] - s_hat) * (0.5 * slope + 0.5 * (x_next - d2) / s[i + 1])
        x = x_next
    return x


def sde_euler_maruyama(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler-Maruyama on the reverse VE SDE (Song et al. 2021, Eq. 6; Anderson 1982).

    In sigma as time: dx = -2 sigma score dsigma + sqrt(2 sigma) dW over decreasing sigma,
    so with Delta = sigma_i - sigma_{i+1} > 0:
    x' = x + 2 sigma Delta score + sqrt(2 sigma Delta) z, score = (D - x)/sigma^2.
    The last step onto 0 is the denoising step x = D. One call per step.
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        if s[i + 1] == 0.0:
            return d
        delta = s[i] - s[i + 1]
        x = x + (2.0 * delta / s[i]) * (d - x)
        x = x + math.sqrt(2.0 * s[i] * delta) * noise_like(x, generator)
    return x


def _langevin_step(
    denoiser: DenoiserFn,
    x: Tensor,
    s: float,
    cond: Any,
    generator: torch.Generator | None,
    snr: float,
) -> Tensor:
    """Langevin corrector step (Song et al. 2021, Alg. 4, alpha = 1) with step size
    eps = 2 (snr ||z|| / ||score||)^2, the norms averaged over the batch as in the authors'
    implementation (per-sample ratios are heavy-tailed in low dimension)."""
    score = (denoiser(x, sigma_batch(s, x), cond) - x) / (s * s)
    z = noise_like(x, generator)
    z_norm = z.flatten(1).norm(dim=1).mean()
    g_norm = score.flatten(1).norm(dim=1).mean().clamp_min(1e-30)
    eps = 2.0 * (snr * z_norm / g_norm) ** 2  # () tensor: no host sync
    return x + eps * score + torch.sqrt(2.0 * eps) * z


def predictor_corrector(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    snr: float = 0.16,
    n_corrector: int = 1,
) -> Tensor:
    """Predictor-corrector sampling, Song et al. (2021), Alg. 2 (VE SDE).

    Reverse-diffusion predictor x' = x + (s^2 - s'^2) score(x, s) + sqrt(s^2 - s'^2) z, then
    ``n_corrector`` Langevin steps at s' (Alg. 4, signal-to-noise ratio ``snr``). The last
    step onto 0 is the denoising x = D. An n-step grid costs (n - 1)(1 + n_corrector) + 1.
    """
    s = grid_values(sigmas)
    for i in range(len(s) - 1):
        d = denoise(denoiser, x, s[i], cond, i, callback)
        if s[i + 1] == 0.0:
            return d
        var = s[i] ** 2 - s[i + 1] ** 2
        x = x + (var / s[i] ** 2) * (d - x) + math.sqrt(var) * noise_like(x, generator)
        for _ in range(n_corrector):
            x = _langevin_step(denoiser, x, s[i + 1], cond, generator, snr)
    return x


def langevin(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    step_size: float = 2e-5,
    n_steps_each: int = 10,
) -> Tensor:
    """Annealed Langevin dynamics, Song & Ermon (2019), Alg. 1, then denoising.

    For each non-zero level sigma_i: alpha_i = step_size * sigma_i^2 / sigma_L^2 and
    ``n_steps_each`` (T) steps x <- x + alpha_i/2 score(x, sigma_i) + sqrt(alpha_i) z.
    Finally x = D(x, sigma_L) (Tweedie denoising; Song & Ermon 2020, Sec. 4). An n-step
    grid (n non-zero levels) costs n T + 1 calls.
    """
    s = grid_values(sigmas)
    levels = s[:-1]
    s_last = levels[-1]
    for i, si in enumerate(levels):
        alpha = step_size * si * si / (s_last * s_last)
        for _ in range(n_steps_each):
            d = denoiser(x, sigma_batch(si, x), cond)
            x = x + (0.5 * alpha / (si * si)) * (d - x)  # alpha/2 * score
            x = x + math.sqrt(alpha) * noise_like(x, generator)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": si, "denoised": None})
    return denoiser(x, sigma_batch(s_last, x), cond)
