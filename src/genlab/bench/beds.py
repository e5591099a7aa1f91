"""The test beds of the sampler benchmark: analytic Gaussian mixtures with exact PF-ODE answers.

A bed is a mixture (its exact denoiser is the model, so discretisation is the only error)
and a noise-level setting (`benchmarks/protocols.md`):

- ``sd``: the noise levels of Stable Diffusion's VP schedule (scaled_linear betas
  0.00085..0.012, 1000 steps), sigma in [0.0291675, 14.6146], then 0;
- ``edm``: sigma in [0.002, 80] (Karras et al. 2022, Sec. 5), then 0.

Mixtures: the anchors' ``ring8_D2`` (8 Gaussians on a circle of radius 4, std 0.3) and
``gmm16_D64`` (``GaussianMixture.random()``), and random mixtures ``gmm{K}_D{D}_s{std}``
(``GaussianMixture.random(K, D, std=std)``) spanning D in {2, 16, 64, 256}, K in {4, 16,
64} and component std in {0.1, 0.5, 1.0}. Every bed starts from x = x0 + sigma_max * eps
with x0 exact mixture samples (seeded), and its reference is the PF-ODE endpoint by
scipy's DOP853 at rtol = atol = 1e-10 in float64.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from scipy.integrate import solve_ivp
from torch import Tensor

from genlab.data.gmm import GaussianMixture
from genlab.diffusion import schedules
from genlab.diffusion.paths import DDPMPath, EDMPath

SETTINGS = ("sd", "edm")
SHIPPED = ("ring8_D2", "gmm16_D64")  # the mixtures of the published anchors
# (K, D, std) of the added random mixtures: every value of each factor at least twice
RANDOM = ((4, 2, 0.1), (64, 2, 0.5), (16, 16, 0.1), (64, 16, 1.0), (4, 64, 1.0),
          (64, 64, 0.1), (16, 256, 0.5), (4, 256, 0.1))  # fmt: skip
PILOT_SEED = 12345  # the benchmark's pilot noise, never its evaluation noise (seed 0)


def sd_range() -> tuple[float, float]:
    """(sigma_min, sigma_max) of Stable Diffusion's scaled_linear DDPM schedule."""
    levels = DDPMPath(schedule="scaled_linear").noise_levels
    return float(levels[0]), float(levels[-1])


def mixture(name: str) -> GaussianMixture:
    """The mixture of a bed name: ``ring8_D2``, ``gmm16_D64`` or ``gmm{K}_D{D}_s{std}``."""
    if name == "ring8_D2":
        return GaussianMixture.ring()
    if name == "gmm16_D64":
        return GaussianMixture.random()
    try:
        k_part, d_part, s_part = name.split("_")
        k, d, std = int(k_part.removeprefix("gmm")), int(d_part[1:]), float(s_part[1:])
    except ValueError:
        raise ValueError(f"unknown mixture {name!r}") from None
    return GaussianMixture.random(k, d, std=std)


def mixture_names() -> tuple[str, ...]:
    """Every mixture of the full benchmark."""
    return (*SHIPPED, *(f"gmm{k}_D{d}_s{std:g}" for k, d, std in RANDOM))


@dataclass(frozen=True)
class Bed:
    """One test bed: a mixture and a noise-level range (``name`` is ``mixture/setting``)."""

    name: str
    gmm: GaussianMixture
    sigma_min: float
    sigma_max: float

    @property
    def setting(self) -> str:
        return self.name.split("/")[1]

    def uniform_t(self, n: int) -> Tensor:
        """n steps uniform in the setting's own time: DDPM trailing timesteps (``sd``) or
        uniform sigma of the EDM path (``edm``)."""
        if self.setting == "sd":
            return schedules.uniform_t(DDPMPath(schedule="scaled_linear"), n, spacing="trailing")
        return schedules.uniform_t(EDMPath(), n, sigma_min=self.sigma_min,
                                   sigma_max=self.sigma_max)  # fmt: skip


def bed(name: str) -> Bed:
    """The bed ``mixture/setting`` (ValueError for an unknown name)."""
    mix, _, setting = name.partition("/")
    if setting not in SETTINGS:
        raise ValueError(f"bed {name!r}: the setting must be one of {', '.join(SETTINGS)}")
    lo, hi = sd_range() if setting == "sd" else (0.002, 80.0)
    return Bed(name, mixture(mix), lo, hi)


def beds(names: tuple[str, ...] | None = None) -> list[Bed]:
    """The named beds, or every mixture under both settings."""
    if names is None:
        names = tuple(f"{m}/{s}" for m in mixture_names() for s in SETTINGS)
    return [bed(n) for n in names]


def starts(b: Bed, n: int, seed: int = 0) -> Tensor:
    """(n, D) float64 start points x0 + sigma_max * eps, x0 exact mixture samples."""
    gen = torch.Generator().manual_seed(seed)
    x0 = b.gmm.sample(n, generator=gen)  # (n, D)
    return x0 + b.sigma_max * torch.randn(x0.shape, generator=gen, dtype=torch.float64)


def reference_solution(
    gmm: GaussianMixture, x: Tensor, sigma_max: float, tol: float = 1e-10
) -> Tensor:
    """PF-ODE endpoint at sigma = 0 by scipy DOP853 (float64) of dx/dsigma = -sigma score(x)
    (the ODE (x - D)/sigma of Karras et al. 2022, Eq. 4, without the 0/0 at sigma = 0)."""
    shape = x.shape

    def rhs(s: float, y: Any) -> Any:
        yt = torch.from_numpy(y).reshape(shape)  # (N, D)
        return (-s * gmm.score(yt, s)).reshape(-1).numpy()

    sol = solve_ivp(rhs, (sigma_max, 0.0), x.reshape(-1).numpy(), method="DOP853",
                    rtol=tol, atol=tol)  # fmt: skip
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape)


def problem(
    b: Bed, n: int, *, seed: int = 0, cache: Path | None = None, tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """(start points, reference endpoints), both (n, D) float64; the reference is read from
    (or written atomically to) ``cache`` when given, keyed by bed, n, seed and tolerance."""
    x = starts(b, n, seed)
    if cache is None:
        return x, reference_solution(b.gmm, x, b.sigma_max, tol)
    path = Path(cache) / f"{b.name.replace('/', '-')}-n{n}-seed{seed}-tol{tol:g}.safetensors"
    if path.is_file():
        saved = load_file(path)
        if saved["x"].shape == x.shape and torch.equal(saved["x"], x):
            return x, saved["ref"]
    ref = reference_solution(b.gmm, x, b.sigma_max, tol)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"x": x.contiguous(), "ref": ref.contiguous()}, tmp)
    os.replace(tmp, path)
    return x, ref
