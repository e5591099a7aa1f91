"""Gaussian paths x_t = alpha(t) * x0 + sigma(t) * eps: the forward processes of diffusion.

A path is only the pair (alpha, sigma) with analytic time derivatives and the exact
inverse of the noise level s = sigma / alpha. Paths hold no parameters and no state:
`t` goes in, coefficients come out. Samplers never see a path; they work in the
canonical coordinates x~ = x_t / alpha = x0 + s * eps of Karras et al. (2022).

Every path also states
- `t_min`, `t_max`: the time domain used for training;
- `sigma_min`, `sigma_max`: the default noise-level range for sampling;
- `net_time(t)`: the scalar the network is conditioned on, on a common scale of about
  [0, 1000] so that one sinusoidal embedding fits every path.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Coefs:
    """Path coefficients at times `t`; every field has the shape of `t`."""

    t: Tensor
    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor  # d alpha / dt
    d_sigma: Tensor  # d sigma / dt

    @property
    def noise_level(self) -> Tensor:
        """s = sigma / alpha, the noise level in canonical coordinates."""
        return self.sigma / self.alpha


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a (B,) tensor to (B, 1, ..., 1) with `ndim` dimensions for broadcasting."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


class NoisePath(ABC):
    """Base class. Subclasses implement `coefs` and `t_from_noise`."""

    name: str = "path"
    t_min: float = 0.0
    t_max: float = 1.0

    @abstractmethod
    def coefs(self, t: Tensor) -> Coefs:
        """alpha, sigma and their time derivatives at `t`."""

    @abstractmethod
    def t_from_noise(self, s: Tensor) -> Tensor:
        """The exact inverse of `noise_level`."""

    def noise_level(self, t: Tensor) -> Tensor:
        """s(t) = sigma(t) / alpha(t)."""
        return self.coefs(t).noise_level

    def net_time(self, t: Tensor) -> Tensor:
        """Time input of the network: 1000 t for paths on [0, 1]."""
        return 1000.0 * t

    def from_canonical(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Coefs]:
        """Canonical state x = x0 + sigma eps, sigma (B,) -> (x_t = alpha x, coefficients).
        Coefficients are computed in float64; x_t keeps x's dtype."""
        c = self.coefs(self.t_from_noise(sigma.to(torch.float64)))
        return x * append_dims(c.alpha, x.ndim).to(x.dtype), c

    def add_noise(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        """x_t = alpha x0 + sigma eps at the coefficients `c` (shape (B,))."""
        a = append_dims(c.alpha, x0.ndim).to(x0.dtype)
        return a * x0 + append_dims(c.sigma, x0.ndim).to(x0.dtype) * eps

    @property
    def sigma_min(self) -> float:
        return float(self.noise_level(torch.tensor(self.t_min, dtype=torch.float64, device="cpu")))

    @property
    def sigma_max(self) -> float:
        return float(self.noise_level(torch.tensor(self.t_max, dtype=torch.float64, device="cpu")))

    def config(self) -> dict[str, object]:
        """The constructor arguments, for saving and rebuilding the path by name."""
        return {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if self.__dataclass_fields__[k].init
        }  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _PureNoisePath(NoisePath):
    """A path on t in [0, 1] that reaches pure noise, alpha(1) = 0: s = sigma / alpha is
    infinite at t = 1, so sampling starts from the large finite noise level
    `sample_sigma_max` (and stops at `sample_sigma_min`)."""

    sample_sigma_min: float = 2e-3
    sample_sigma_max: float = 500.0
    name: str = field(default="pure-noise", init=False)
    t_min: float = field(default=0.0, init=False)
    t_max: float = field(default=1.0, init=False)

    @property
    def sigma_min(self) -> float:
        return self.sample_sigma_min

    @property
    def sigma_max(self) -> float:
        return self.sample_sigma_max


@dataclass(frozen=True)
class LinearPath(_PureNoisePath):
    """Flow matching / rectified flow: alpha = 1 - t, sigma = t (Lipman et al. 2023; Liu et al.).

    s = t / (1 - t) is infinite at t = 1, so sampling starts from a large finite noise level.
    """

    name: str = field(default="linear", init=False)

    def coefs(self, t: Tensor) -> Coefs:
        one = torch.ones_like(t)
        return Coefs(t, 1.0 - t, t, -one, one)

    def t_from_noise(self, s: Tensor) -> Tensor:
        return s / (1.0 + s)


@dataclass(frozen=True)
class CosinePath(_PureNoisePath):
    """Trigonometric path alpha = cos(pi t / 2), sigma = sin(pi t / 2); s = tan(pi t / 2)."""

    name: str = field(default="cosine", init=False)

    def coefs(self, t: Tensor) -> Coefs:
        h = 0.5 * math.pi
        a, s = torch.cos(h * t), torch.sin(h * t)
        return Coefs(t, a, s, -h * s, h * a)

    def t_from_noise(self, s: Tensor) -> Tensor:
        return torch.atan(s) * (2.0 / math.pi)


@dataclass(frozen=True)
class VPPath(NoisePath):
    """Continuous variance-preserving path with linear beta (Song et al. 2021, eq. 32-33).

    log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2, sigma = sqrt(1 - alpha^2).
    Training uses t in [1e-5, 1]; sampling stops at t = 1e-3 as in the paper.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_eps_sample: float = 1e-3
    name: str = field(default="vp", init=False)
    t_min: float = field(default=1e-5, init=False)
    t_max: float = field(default=1.0, init=False)

    def _log_alpha(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def coefs(self, t: Tensor) -> Coefs:
        log_a = self._log_alpha(t)
        alpha = torch.exp(log_a)
        sigma = torch.sqrt(-torch.expm1(2.0 * log_a))
        beta = self.beta_min + t * (self.beta_max - self.beta_min)
        d_alpha = -0.5 * beta * alpha
        d_sigma = -alpha * d_alpha / sigma
        return Coefs(t, alpha, sigma, d_alpha, d_sigma)

    def noise_level(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(-2.0 * self._log_alpha(t)))

    def t_from_noise(self, s: Tensor) -> Tensor:
        # -2 log alpha = log(1 + s^2) = (b1 - b0) t^2 / 2 + b0 t: positive root, no cancellation.
        big_l = torch.log1p(s**2)
        db = self.beta_max - self.beta_min
        return 2.0 * big_l / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * db * big_l))

    @property
    def sigma_min(self) -> float:
        t = torch.tensor(self.t_eps_sample, dtype=torch.float64, device="cpu")
        return float(self.noise_level(t))


@dataclass(frozen=True)
class VEPath(NoisePath):
    """Variance-exploding path of SMLD / NCSN: alpha = 1, sigma = s_min (s_max / s_min)^t."""

    smin: float = 0.01
    smax: float = 50.0
    name: str = field(default="ve", init=False)
    t_min: float = field(default=0.0, init=False)
    t_max: float = field(default=1.0, init=False)

    def coefs(self, t: Tensor) -> Coefs:
        log_ratio = math.log(self.smax / self.smin)
        sigma = self.smin * torch.exp(t * log_ratio)
        return Coefs(t, torch.ones_like(t), sigma, torch.zeros_like(t), sigma * log_ratio)

    def t_from_noise(self, s: Tensor) -> Tensor:
        return torch.log(s / self.smin) / math.log(self.smax / self.smin)


@dataclass(frozen=True)
class EDMPath(NoisePath):
    """EDM (Karras et al. 2022): alpha = 1, sigma = t, on [sigma_min, sigma_max]."""

    smin: float = 2e-3
    smax: float = 80.0
    name: str = field(default="edm", init=False)

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.smin

    @property
    def t_max(self) -> float:  # type: ignore[override]
        return self.smax

    def coefs(self, t: Tensor) -> Coefs:
        return Coefs(t, torch.ones_like(t), t, torch.zeros_like(t), torch.ones_like(t))

    def t_from_noise(self, s: Tensor) -> Tensor:
        return s

    def net_time(self, t: Tensor) -> Tensor:
        """EDM's c_noise = ln(sigma) / 4, times 1000."""
        return 250.0 * torch.log(t)


MAX_DDPM_STEPS = 1_000_000  # noise levels of a discrete path (its tables: 8 bytes each)


def ddpm_alphas_cumprod(schedule: str, num_steps: int) -> Tensor:
    """abar_k for k = 0..K-1 in float64: Ho et al. (2020) linear betas 1e-4..0.02, Stable
    Diffusion's scaled_linear (betas linear in sqrt between 0.00085 and 0.012), or the
    cosine schedule of Nichol & Dhariwal (2021, eq. 17), offset 0.008, betas clipped at 0.999.
    On the CPU whatever the default device, like every constant of a path (a model built on
    the meta device to be measured still has its noise levels)."""
    k = num_steps
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, k, dtype=torch.float64, device="cpu")
    elif schedule == "scaled_linear":
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, k, dtype=torch.float64, device="cpu") ** 2
    elif schedule == "cosine":
        steps = torch.arange(k + 1, dtype=torch.float64, device="cpu") / k
        f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.clamp(1.0 - f[1:] / f[:-1], max=0.999)
    else:
        raise ValueError(
            f"unknown ddpm schedule {schedule!r}; allowed: linear, scaled_linear, cosine"
        )
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass(frozen=True)
class DDPMPath(NoisePath):
    """Discrete DDPM path: alpha_k = sqrt(abar_k), sigma_k = sqrt(1 - abar_k), k = 0..K-1.

    Between integer steps, log s is interpolated linearly in t (the continuous step index),
    so the path is exact at every integer step and t_from_noise inverts it exactly there.
    """

    schedule: str = "linear"
    num_steps: int = 1000
    name: str = field(default="ddpm", init=False)
    alphas_cumprod: Tensor = field(init=False, repr=False, compare=False)
    noise_levels: Tensor = field(init=False, repr=False, compare=False)
    _log_s: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.num_steps, int) or not 2 <= self.num_steps <= MAX_DDPM_STEPS:
            raise ValueError(f"num_steps must be an integer in 2..{MAX_DDPM_STEPS} "
                             f"(got {self.num_steps!r})")  # fmt: skip
        self._tabulate(ddpm_alphas_cumprod(self.schedule, self.num_steps))

    def _tabulate(self, abar: Tensor) -> None:
        """Store abar_k (float64, (K,)) and the noise levels s_k = sqrt((1 - abar_k) / abar_k)."""
        s = torch.sqrt((1.0 - abar) / abar)
        object.__setattr__(self, "alphas_cumprod", abar)
        object.__setattr__(self, "noise_levels", s)
        object.__setattr__(self, "_log_s", torch.log(s))

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return 0.0

    @property
    def t_max(self) -> float:  # type: ignore[override]
        return float(self.num_steps - 1)

    def net_time(self, t: Tensor) -> Tensor:
        return t

    def coefs(self, t: Tensor) -> Coefs:
        log_s = self._log_s.to(device=t.device, dtype=t.dtype)
        k = torch.clamp(torch.floor(t), 0, self.num_steps - 2).long()
        slope = log_s[k + 1] - log_s[k]  # d log s / dt on this interval
        s = torch.exp(log_s[k] + (t - k.to(t.dtype)) * slope)
        alpha = torch.rsqrt(1.0 + s**2)
        sigma = s * alpha
        return Coefs(t, alpha, sigma, -alpha * sigma**2 * slope, sigma * alpha**2 * slope)

    def t_from_noise(self, s: Tensor) -> Tensor:
        log_s = self._log_s.to(device=s.device, dtype=s.dtype)
        ls = torch.log(s)
        k = torch.clamp(torch.searchsorted(log_s, ls.contiguous()) - 1, 0, self.num_steps - 2)
        frac = (ls - log_s[k]) / (log_s[k + 1] - log_s[k])
        return torch.clamp(k.to(s.dtype) + frac, 0.0, float(self.num_steps - 1))


TIME_INPUTS = ("continuous", "nearest", "round")


@dataclass(frozen=True)
class TabulatedDDPMPath(DDPMPath):
    """A discrete DDPM path over a given table abar_0 > ... > abar_{K-1} (in (0, 1)): a
    foreign model's own schedule, e.g. the float32 ``alphas_cumprod`` of a diffusers
    scheduler, so that the noise levels are exactly the ones the model was trained at.

    ``time_input`` is what the network is told between integer steps: ``continuous`` feeds
    t(sigma) as it is; ``nearest`` (for a model trained at integer steps only) feeds a t
    within 1e-3 of an integer as that integer, so that a grid point given in single
    precision (whose t is off by about 1e-5 steps) is evaluated at exactly its step;
    ``round`` rounds every t, as diffusers' multistep schedulers do with Karras sigmas.
    The path coefficients (alpha, sigma) always follow sigma itself.
    """

    table: tuple[float, ...] = ()
    time_input: str = "nearest"
    schedule: str = field(default="table", init=False)
    num_steps: int = field(default=0, init=False)
    name: str = field(default="ddpm-table", init=False)

    def __post_init__(self) -> None:
        abar = torch.tensor(self.table, dtype=torch.float64, device="cpu")  # (K,)
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError("a tabulated DDPM path needs at least two alphas_cumprod")
        inside = bool(torch.all((abar > 0) & (abar < 1)))
        if not inside or not bool(torch.all(abar[1:] < abar[:-1])):
            raise ValueError("alphas_cumprod must lie in (0, 1) and decrease strictly")
        if self.time_input not in TIME_INPUTS:
            raise ValueError(
                f"unknown time_input {self.time_input!r}; allowed: {', '.join(TIME_INPUTS)}"
            )
        object.__setattr__(self, "num_steps", int(abar.numel()))
        self._tabulate(abar)

    def net_time(self, t: Tensor) -> Tensor:
        """The network's time input for path times t (see ``time_input``)."""
        if self.time_input == "continuous":
            return t
        k = torch.round(t)
        return k if self.time_input == "round" else torch.where((t - k).abs() < 1e-3, k, t)


PATHS: dict[str, type[NoisePath]] = {
    "linear": LinearPath,
    "cosine": CosinePath,
    "vp": VPPath,
    "ve": VEPath,
    "edm": EDMPath,
    "ddpm": DDPMPath,
}
