"""What the raw network predicts, and every conversion between that and x0.

This is the only module that knows the formulas linking eps, x0, v, velocity, score and
EDM preconditioning (docs/architecture.md). Each parameterization is a
small stateless object answering four questions for path coefficients `c` at the noisy
state x_t = alpha x0 + sigma eps:

- `net_inputs(x_t, c, path)`: what the network is fed (state, time input);
- `to_x0(out, x_t, c)`: the denoised estimate x0_hat from the network output;
- `target(x0, eps, c)`: the regression target for the network output;
- `error_scale(c)`: lambda_native with ||out - target||^2 = lambda_native ||x0_hat - x0||^2,
  so that any loss weighting can be stated once, in x0 space (Karras et al. 2022, eq. 8).

Coefficient tensors have shape (B,); `append_dims` broadcasts them against the data.
Formulas stay finite where alpha -> 0 (t = 1 on the linear and cosine paths).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.diffusion.paths import Coefs, NoisePath, append_dims


class Parameterization(ABC):
    """Base: the network sees (x_t, path.net_time(t))."""

    name: str = "base"

    def net_inputs(self, x_t: Tensor, c: Coefs, path: NoisePath) -> tuple[Tensor, Tensor]:
        return x_t, path.net_time(c.t)

    @abstractmethod
    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        """x0_hat from the network output."""

    @abstractmethod
    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        """The regression target of the network output."""

    @abstractmethod
    def error_scale(self, c: Coefs) -> Tensor:
        """lambda_native: ||out - target||^2 = lambda_native * ||x0_hat - x0||^2."""

    def config(self) -> dict[str, object]:
        return {}


def _b(v: Tensor, x: Tensor) -> Tensor:
    return append_dims(v, x.ndim).to(x.dtype)


class EpsParam(Parameterization):
    """Noise prediction (Ho et al. 2020): x0 = (x_t - sigma eps_hat) / alpha."""

    name = "eps"

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        return (x_t - _b(c.sigma, x_t) * out) / _b(c.alpha, x_t)

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        return eps

    def error_scale(self, c: Coefs) -> Tensor:
        return (c.alpha / c.sigma) ** 2


class X0Param(Parameterization):
    """Direct data prediction."""

    name = "x0"

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        return out

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        return x0

    def error_scale(self, c: Coefs) -> Tensor:
        return torch.ones_like(c.t)


class VParam(Parameterization):
    """v-prediction (Salimans & Ho 2022): v = alpha eps - sigma x0,
    x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2) on any path."""

    name = "v"

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        a, s = _b(c.alpha, x_t), _b(c.sigma, x_t)
        return (a * x_t - s * out) / (a**2 + s**2)

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        return _b(c.alpha, x0) * eps - _b(c.sigma, x0) * x0

    def error_scale(self, c: Coefs) -> Tensor:
        return ((c.alpha**2 + c.sigma**2) / c.sigma) ** 2


class VelocityParam(Parameterization):
    """Flow-matching velocity u = alpha' x0 + sigma' eps (Lipman et al. 2023, eq. 15):
    x0 = (sigma u - sigma' x_t) / (alpha' sigma - sigma' alpha)."""

    name = "velocity"

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        det = _b(c.d_alpha * c.sigma - c.d_sigma * c.alpha, x_t)
        return (_b(c.sigma, x_t) * out - _b(c.d_sigma, x_t) * x_t) / det

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        return _b(c.d_alpha, x0) * x0 + _b(c.d_sigma, x0) * eps

    def error_scale(self, c: Coefs) -> Tensor:
        return ((c.d_alpha * c.sigma - c.d_sigma * c.alpha) / c.sigma) ** 2


class ScoreParam(Parameterization):
    """Score prediction: grad log p_t(x_t) = -eps / sigma, x0 = (x_t + sigma^2 score) / alpha
    (Tweedie's formula)."""

    name = "score"

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        return (x_t + _b(c.sigma, x_t) ** 2 * out) / _b(c.alpha, x_t)

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        return -eps / _b(c.sigma, eps)

    def error_scale(self, c: Coefs) -> Tensor:
        return c.alpha**2 / c.sigma**4


@dataclass(frozen=True)
class EDMPrecond(Parameterization):
    """EDM preconditioning (Karras et al. 2022, Table 1) in canonical coordinates
    x~ = x_t / alpha, s = sigma / alpha:  D = c_skip x~ + c_out F(c_in x~, c_noise) with
    c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2),
    c_noise = ln(s) / 4. Written with alpha and sigma so it stays finite as alpha -> 0."""

    sigma_data: float = 0.5
    name: str = "edm"

    def _r(self, c: Coefs) -> Tensor:  # sqrt(sigma^2 + alpha^2 sd^2) = alpha sqrt(s^2 + sd^2)
        return torch.sqrt(c.sigma**2 + (c.alpha * self.sigma_data) ** 2)

    def net_inputs(self, x_t: Tensor, c: Coefs, path: NoisePath) -> tuple[Tensor, Tensor]:
        tiny = torch.finfo(c.alpha.dtype).tiny
        log_s = torch.log(c.sigma.clamp_min(tiny)) - torch.log(c.alpha.clamp_min(tiny))
        return x_t / _b(self._r(c), x_t), 250.0 * log_s  # 1000 * c_noise

    def _skip_out(self, c: Coefs) -> tuple[Tensor, Tensor]:
        r = self._r(c)
        c_skip_over_alpha = self.sigma_data**2 * c.alpha / r**2  # c_skip / alpha
        c_out = c.sigma * self.sigma_data / r
        return c_skip_over_alpha, c_out

    def to_x0(self, out: Tensor, x_t: Tensor, c: Coefs) -> Tensor:
        skip, c_out = self._skip_out(c)
        return _b(skip, x_t) * x_t + _b(c_out, x_t) * out

    def target(self, x0: Tensor, eps: Tensor, c: Coefs) -> Tensor:
        skip, c_out = self._skip_out(c)
        x_t = _b(c.alpha, x0) * x0 + _b(c.sigma, x0) * eps
        return (x0 - _b(skip, x0) * x_t) / _b(c_out, x0)

    def error_scale(self, c: Coefs) -> Tensor:
        return 1.0 / self._skip_out(c)[1] ** 2

    def config(self) -> dict[str, object]:
        return {"sigma_data": self.sigma_data}


PARAMETERIZATIONS: dict[str, type[Parameterization]] = {
    "eps": EpsParam,
    "x0": X0Param,
    "v": VParam,
    "velocity": VelocityParam,
    "score": ScoreParam,
    "edm": EDMPrecond,
}
