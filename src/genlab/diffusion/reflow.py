"""Rectified flow's reflow procedure (Liu, Gong & Liu 2023, "Flow straight and fast").

Convention (flow matching's, as everywhere in genlab): data x0 at t = 0, noise z = x1 at t = 1,
x_t = (1 - t) x0 + t x1, and a velocity network v(x_t, time_scale * t) regressing
x1 - x0 (Liu et al. 2023, eq. 1 with the time reversed). A 1-rectified flow is a
flow-matching `Diffusion` trained on independent pairs; reflow:

1. `couplings`: draw z ~ N(0, I), solve the model's ODE accurately from t = 1 to t = 0 to get
   x = ODE(z); the deterministic pairs (z, x) are the new coupling (Liu et al. 2023, Alg. 1,
   "Reflow").
2. `Reflow`: a `GenerativeModel` whose training data are those pairs, a tensor
   (N, 2, *data_shape) with [:, 0] = z and [:, 1] = x, so the family-agnostic trainer can feed
   it; its loss is the same velocity regression on the straight interpolation between the
   paired endpoints (eq. 1 on the new coupling).
3. `straightness`: S(v) = int_0^1 E ||(x1 - x0) - v(x_t, t)||^2 dt along the ODE trajectories
   (Liu et al. 2023, eq. 7, as the sum over dimensions); 0 iff every trajectory is a straight
   line travelled at constant speed, which one Euler step then solves exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from genlab.diffusion.paths import LinearPath
from genlab.protocol import GenerativeModel

Velocity = Callable[[Tensor, Tensor], Tensor]  # (x (B, ...), t (B,)) -> dx/dt (B, ...)


def fm_velocity(model: nn.Module, cond: Tensor | None = None) -> Velocity:
    """The velocity field v(x_t, t) of a flow-matching `Diffusion` (linear path, velocity
    parameterization) or of a `Reflow` model, in the t-coordinates above."""
    if isinstance(model, Reflow):
        return lambda x, t: model.velocity(x, t, cond)
    path = model.objective.path
    if not isinstance(path, LinearPath) or model.objective.parameterization.name != "velocity":
        raise ValueError("needs a Diffusion with the linear path and velocity parameterization")
    return lambda x, t: model.net(x, path.net_time(t.to(torch.float64)).to(x.dtype), cond)


@torch.no_grad()
def euler(velocity: Velocity, z: Tensor, nfe: int) -> Tensor:
    """`nfe` uniform Euler steps from t = 1 (z) to t = 0: x <- x - (1/nfe) v(x, t)."""
    x, h = z, 1.0 / nfe
    for i in range(nfe):
        t = torch.full((x.shape[0],), 1.0 - i * h, dtype=x.dtype, device=x.device)  # (B,)
        x = x - h * velocity(x, t)
    return x


@torch.no_grad()
def rk4_trajectory(velocity: Velocity, z: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Classical RK4 from t = 1 to t = 0 on a uniform grid: states (steps + 1, B, ...), their
    times (steps + 1,) and the velocities at the states (steps + 1, B, ...)."""
    h = 1.0 / steps
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    x, xs, vs = z, [z], []

    def v(y: Tensor, t: float) -> Tensor:
        return velocity(y, torch.full((y.shape[0],), t, dtype=y.dtype, device=y.device))

    for i in range(steps):
        t = float(ts[i])
        k1 = v(x, t)
        k2 = v(x - 0.5 * h * k1, t - 0.5 * h)
        k3 = v(x - 0.5 * h * k2, t - 0.5 * h)
        k4 = v(x - h * k3, t - h)
        vs.append(k1)
        x = x - (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        xs.append(x)
    vs.append(v(x, 0.0))
    return torch.stack(xs), ts, torch.stack(vs)


@torch.no_grad()
def couplings(
    model: nn.Module,
    n: int,
    *,
    steps: int = 100,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(n, 2, *data_shape) pairs [z, ODE(z)] of a flow-matching model (Liu et al. 2023, Alg. 1),
    solved with `steps` RK4 steps from t = 1 to t = 0 (4 * steps network calls)."""
    velocity = fm_velocity(model)
    dtype = next(model.parameters()).dtype
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn((m, *model.data_shape), generator=generator, dtype=dtype)
        x = rk4_trajectory(velocity, z, steps)[0][-1]
        out.append(torch.stack([z, x], dim=1))  # (m, 2, ...)
    return torch.cat(out)


@torch.no_grad()
def straightness(
    model: nn.Module,
    n: int = 1000,
    *,
    steps: int = 50,
    generator: torch.Generator | None = None,
) -> float:
    """S = int_0^1 E||(x1 - x0) - v(x_t, t)||^2 dt (Liu et al. 2023, eq. 7) of a flow-matching or
    reflow model, along its RK4 trajectories from n noise draws (trapezoid rule in t;
    ||.||^2 summed over dimensions). Zero iff all trajectories are straight."""
    velocity = fm_velocity(model)
    dtype = next(model.parameters()).dtype
    z = torch.randn((n, *model.data_shape), generator=generator, dtype=dtype)
    xs, _, vs = rk4_trajectory(velocity, z, steps)  # (T, n, ...)
    disp = xs[0] - xs[-1]  # x1 - x0, (n, ...)
    dev = ((disp[None] - vs) ** 2).reshape(steps + 1, n, -1).sum(-1).mean(-1)  # (T,)
    return float(((dev[1:] + dev[:-1]) / 2).mean())


class Reflow(GenerativeModel):
    """k-rectified flow trained on a fixed coupling (Liu et al. 2023, Alg. 1).

    `loss(pairs)` with pairs (B, 2, *data_shape) = [z, x]: t ~ U[0, 1],
    x_t = (1 - t) x + t z, loss = mean over dimensions of ||v(x_t, t) - (z - x)||^2.
    `net(x, time_scale * t, cond)` is the same network interface as flow matching, so
    `Reflow.from_flow_matching` can start from the previous flow's weights (as Liu et al. do).
    """

    def __init__(
        self, net: nn.Module, data_shape: tuple[int, ...], *, time_scale: float = 1000.0,
        nfe: int = 1,
    ) -> None:  # fmt: skip
        super().__init__()
        self.net, self.data_shape = net, tuple(data_shape)
        self.time_scale, self.nfe = time_scale, nfe

    @classmethod
    def from_flow_matching(cls, model: nn.Module, *, nfe: int = 1, share: bool = False) -> Reflow:
        """A reflow model initialised with a copy of a flow-matching `Diffusion`'s network (the
        network itself with `share`)."""
        flow_net = model.net if share else copy.deepcopy(model.net)
        scale = float(model.objective.path.net_time(torch.tensor(1.0, dtype=torch.float64)))
        return cls(flow_net, model.data_shape, time_scale=scale, nfe=nfe)

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """v(x, t) (B, *data_shape); t (B,) in [0, 1]."""
        return self.net(x, self.time_scale * t.to(x.dtype), cond)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Velocity regression on the straight interpolation of the pairs (Liu et al. 2023,
        eq. 1); x: pairs (B, 2, *data_shape) = [z, x0]. Per-example loss (B,)."""
        if tuple(x.shape[1:]) != (2, *self.data_shape):
            raise ValueError(f"Reflow trains on pairs (B, 2, *data_shape), got {tuple(x.shape)}")
        z, x0 = x[:, 0], x[:, 1]  # (B, ...)
        t = torch.rand(x.shape[0], dtype=x.dtype, device=x.device)  # (B,)
        tb = t.reshape(-1, *([1] * (x0.ndim - 1)))
        x_t = (1 - tb) * x0 + tb * z
        err = self.velocity(x_t, t, cond) - (z - x0)  # (B, ...)
        return err.reshape(x.shape[0], -1).pow(2).mean(1)  # (B,)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        nfe: int | None = None,
    ) -> Tensor:
        """n draws by `nfe` uniform Euler steps from z ~ N(0, I) at t = 1 (default: the model's)."""
        p = next(self.net.parameters())
        z = torch.randn((n, *self.data_shape), generator=generator, dtype=p.dtype).to(p.device)
        return euler(lambda x, t: self.velocity(x, t, cond), z, nfe or self.nfe)
