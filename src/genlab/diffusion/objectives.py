"""The denoising objective with two independent knobs (docs/architecture.md).

1. Which noise levels training visits: a `NoiseDistribution` draws times t on the path.
2. How much each level counts: a `Weighting` gives lambda(t) in x0 space, i.e. the loss
   is lambda ||D - x0||^2 (Karras et al. 2022, eq. 2 and 8). The loss is computed on the
   network's own target, ||out - target||^2 times lambda / lambda_native, where
   lambda_native comes from the parameterization, so weighting "uniform" is the plain MSE
   of whatever the network predicts.

Known models are presets of these knobs (see `presets.py`), not classes of their own.
Losses are per example, shape (B,); the trainer reduces them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.diffusion.parameterization import Parameterization
from genlab.diffusion.paths import Coefs, DDPMPath, NoisePath
from genlab.errors import ConfigError


class NoiseDistribution(ABC):
    """Draws training times t (float64, shape (n,)) on a path."""

    name: str = "noise"

    @abstractmethod
    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n training times inside [path.t_min, path.t_max]."""

    def config(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _randn(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, generator=generator, dtype=torch.float64)


class UniformT(NoiseDistribution):
    """t ~ U[t_min, t_max] (Song et al. 2021; flow matching)."""

    name = "uniform_t"

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return path.t_min + (path.t_max - path.t_min) * _rand(n, generator)


class UniformK(NoiseDistribution):
    """k ~ U{0, ..., K-1} on the discrete DDPM path (Ho et al. 2020, Alg. 1)."""

    name = "uniform_k"

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        if not isinstance(path, DDPMPath):
            raise ConfigError(f"noise 'uniform_k' needs the 'ddpm' path, not {path.name!r}")
        return torch.randint(0, path.num_steps, (n,), generator=generator).to(torch.float64)


class LogNormal(NoiseDistribution):
    """ln s ~ N(p_mean, p_std^2) (Karras et al. 2022, sec. 5), mapped to t, clipped to the path."""

    name = "lognormal"

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.p_mean, self.p_std = p_mean, p_std

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        s = torch.exp(self.p_mean + self.p_std * _randn(n, generator))
        return path.t_from_noise(s).clamp(path.t_min, path.t_max)


class LogitNormal(NoiseDistribution):
    """t = sigmoid(u), u ~ N(mean, std^2), rescaled to the path's range (Esser et al. 2024, 3.1)."""

    name = "logit_normal"

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = mean, std

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        u = torch.sigmoid(self.mean + self.std * _randn(n, generator))
        return path.t_min + (path.t_max - path.t_min) * u


class LogUniform(NoiseDistribution):
    """ln s ~ U[ln s(t_min), ln sigma_max] of the path's canonical noise levels (uniform in
    log-SNR = -2 ln s), mapped to t: from the lowest level training visits (the path's
    sigma_min where that is 0, as on the linear and cosine paths) to the highest level
    sampling starts from (s(t_max) where finite, and below 1e16 on the cosine path).

    On the VP path with eps-prediction and weighting "uniform" this is the likelihood
    weighting of Song et al. (2021b, "Maximum Likelihood Training of Score-Based Diffusion
    Models", eq. 9 with importance sampling, sec. 5): lambda(t) = g(t)^2 = beta(t) in score
    space is beta / sigma_t^2 on the eps error (sigma_t^2 = 1 - abar_t), and
    beta / (1 - abar) = -d logSNR / dt, so drawing t with density proportional to it leaves
    the plain eps-MSE, a constant times the continuous-time bound on -ln p."""

    name = "log_uniform"

    def sample_t(
        self, n: int, path: NoisePath, *, generator: torch.Generator | None = None
    ) -> Tensor:
        start = float(path.noise_level(torch.tensor(path.t_min, dtype=torch.float64)))
        ends = [start if start > 0 else path.sigma_min, path.sigma_max]  # linear, cosine: s(0) = 0
        lo, hi = torch.log(torch.tensor(ends, dtype=torch.float64)).tolist()
        s = torch.exp(lo + (hi - lo) * _rand(n, generator))
        return path.t_from_noise(s).clamp(path.t_min, path.t_max)


class Weighting(ABC):
    """lambda(t) in x0 space; `None` means the parameterization's own plain MSE."""

    name: str = "weighting"

    @abstractmethod
    def x0_weight(self, c: Coefs) -> Tensor | None:
        """lambda for each example, shape (B,), or None for uniform on the network target."""

    def config(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class Uniform(Weighting):
    """Plain MSE on the network's own target."""

    name = "uniform"

    def x0_weight(self, c: Coefs) -> Tensor | None:
        return None


class SNRWeight(Weighting):
    """lambda = SNR = 1/s^2: the eps-prediction MSE (Ho et al. 2020's L_simple)."""

    name = "snr"

    def x0_weight(self, c: Coefs) -> Tensor | None:
        return (c.alpha / c.sigma) ** 2


class MinSNR(Weighting):
    """lambda = min(SNR, gamma) (Hang et al. 2023, eq. 9)."""

    name = "min_snr"

    def __init__(self, gamma: float = 5.0) -> None:
        self.gamma = gamma

    def x0_weight(self, c: Coefs) -> Tensor | None:
        return torch.clamp((c.alpha / c.sigma) ** 2, max=self.gamma)


class EDMWeight(Weighting):
    """lambda = (s^2 + sd^2) / (s sd)^2 (Karras et al. 2022, Table 1)."""

    name = "edm"

    def __init__(self, sigma_data: float = 0.5) -> None:
        self.sigma_data = sigma_data

    def x0_weight(self, c: Coefs) -> Tensor | None:
        s2 = (c.sigma / c.alpha) ** 2
        return (s2 + self.sigma_data**2) / (s2 * self.sigma_data**2)


NOISE_DISTRIBUTIONS: dict[str, type[NoiseDistribution]] = {
    "uniform_t": UniformT,
    "uniform_k": UniformK,
    "lognormal": LogNormal,
    "logit_normal": LogitNormal,
    "log_uniform": LogUniform,
}
WEIGHTINGS: dict[str, type[Weighting]] = {
    "uniform": Uniform,
    "snr": SNRWeight,
    "min_snr": MinSNR,
    "edm": EDMWeight,
}


@dataclass
class DenoisingLoss:
    """Per-example denoising loss  lambda(t) ||D(x_t) - x0||^2 , computed on the network target."""

    path: NoisePath
    parameterization: Parameterization
    noise: NoiseDistribution
    weighting: Weighting

    def __call__(
        self,
        net: nn.Module,
        x0: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        t = self.noise.sample_t(x0.shape[0], self.path, generator=generator).to(x0.device)
        c = self.path.coefs(t)  # float64 coefficients, (B,)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        x_t = self.path.add_noise(x0, eps, c)  # (B, ...)
        net_x, net_t = self.parameterization.net_inputs(x_t, c, self.path)
        out = net(net_x, net_t.to(x0.dtype), cond)  # (B, ...)
        target = self.parameterization.target(x0, eps, c)
        err = (out - target).flatten(1).pow(2).mean(dim=1)  # (B,)
        lam = self.weighting.x0_weight(c)
        if lam is None:
            return err
        return err * (lam / self.parameterization.error_scale(c)).to(err.dtype)
