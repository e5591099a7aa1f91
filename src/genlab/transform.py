"""The data transform stage of table data: raw units in, raw units out.

A user's table comes in its own units (one column in the thousands, the next around 0.1), some
columns recorded on a grid (counts, flags, a fixed number of decimals). Every family models
the representation y of the raw values x given by the bijection, per column j,

    x'_j = x_j + h_j (u_j - 1/2),  u ~ U[0, 1)     (grid columns of step h_j: dequantisation)
    z_j  = (g_j(x'_j) - shift_j) / scale_j,          g_j = log on log columns, else identity,
    y    = z, or y = W z with W lower triangular     (data.transform = "whiten"),

with the statistics fitted on the training rows (`genlab.data.columns.fit_columns`). By the
change of variables (Dinh et al. 2017, *Real NVP*, eq. 2)

    ln p_X(x') = ln p_Y(y) + sum_j [-ln x'_j over log columns] - sum_j ln scale_j
                 + sum_j ln W_jj,

so `Transformed.log_prob` is the density of the user's raw values (nats per example in raw
units), whatever family is inside. For grid columns x' is uniform over the cell of x, and
E_u ln p_X(x') <= ln(P(cell) / prod_j h_j) (Jensen; Theis et al. 2016, sec. 3.1): the
reported density is a lower bound of the cell-averaged density of the recorded values, which
no continuous density can inflate by putting spikes on the grid. `sample` maps the inner
samples back through the inverse and snaps grid columns onto their grid, so samples are in
the user's raw units and on the values the file could hold.

`ColumnTransform` keeps the statistics as buffers (float64), so they are saved with the
model's weights and `genlab.runs.load_run` restores them; no family module knows about them.
Sample metrics compare in the per-column standardised coordinates z (`standardize`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.data.columns import ColumnStats
from genlab.represent import Represented

__all__ = ["ColumnTransform", "Transformed"]


class ColumnTransform(nn.Module):
    """The bijection of the module docstring; buffers (D,): `shift`, `scale`, `log` (bool),
    grid `step` (0: continuous) and `origin` (a grid value); with `whiten`, `mix` (D, D):
    the lower-triangular W of y = W z."""

    shift: Tensor
    scale: Tensor
    log: Tensor
    step: Tensor
    origin: Tensor
    mix: Tensor | None

    def __init__(self, dim: int, *, whiten: bool = False) -> None:
        super().__init__()
        f64 = torch.float64
        self.register_buffer("shift", torch.zeros(dim, dtype=f64))
        self.register_buffer("scale", torch.ones(dim, dtype=f64))
        self.register_buffer("log", torch.zeros(dim, dtype=torch.bool))
        self.register_buffer("step", torch.zeros(dim, dtype=f64))
        self.register_buffer("origin", torch.zeros(dim, dtype=f64))
        self.register_buffer("mix", torch.eye(dim, dtype=f64) if whiten else None)

    @classmethod
    def from_stats(cls, stats: ColumnStats) -> ColumnTransform:
        """The transform of fitted statistics."""
        t = cls(stats.dim, whiten=stats.mix is not None)
        for name in ("shift", "scale", "log", "step", "origin", "mix"):
            value = getattr(stats, name)
            if value is not None:
                getattr(t, name).copy_(torch.from_numpy(value))
        return t

    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x' = x + h (u - 1/2) on grid columns, u ~ U[0, 1); (B, D) float64."""
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64)  # (B, D)
        return x + self.step * (u.to(x.device) - 0.5)

    def columns(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, ln|det dz/dx|) of raw x (B, D) float64, the per-column standardised values;
        a row with a value <= 0 in a log column has z = 0 there and ln|det| = -inf."""
        bad = (self.log & (x <= 0)).any(1)  # (B,)
        safe = torch.where(self.log, x.clamp_min(torch.finfo(x.dtype).tiny), x)
        g = torch.where(self.log, safe.log(), x)  # (B, D)
        z = (g - self.shift) / self.scale
        logdet = -(g * self.log).sum(1) - self.scale.log().sum()  # (B,)
        z = torch.where(bad[:, None], torch.zeros_like(z), z)
        return z, logdet.masked_fill(bad, float("-inf"))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, ln|det dy/dx|) of raw x (B, D) float64: (B, D), (B,)."""
        z, logdet = self.columns(x)
        if self.mix is None:
            return z, logdet
        return z @ self.mix.T, logdet + self.mix.diagonal().abs().log().sum()

    def inverse(self, y: Tensor) -> Tensor:
        """Raw x of y (B, D) float64 (no snapping)."""
        z = y
        if self.mix is not None:  # z = W^-1 y, W lower triangular
            z = torch.linalg.solve_triangular(self.mix, y.T, upper=False).T
        g = z * self.scale + self.shift
        return torch.where(self.log, g.exp(), g)

    def snap(self, x: Tensor) -> Tensor:
        """Grid columns rounded to their grid origin + step * k (the inverse of the
        dequantisation up to u); continuous columns unchanged."""
        step = torch.where(self.step > 0, self.step, torch.ones_like(self.step))
        on_grid = self.origin + step * torch.round((x - self.origin) / step)
        return torch.where(self.step > 0, on_grid, x)


class Transformed(Represented):
    """`model` of y = T(x') for raw table rows x (module docstring); `transform` holds T."""

    def __init__(self, model: nn.Module, transform: ColumnTransform) -> None:
        super().__init__(model)
        self.transform = transform

    def represent(
        self, x: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(y in x's dtype, ln|det|) of one dequantisation draw of raw rows x (B, D)."""
        y, logdet = self.transform(self.transform.dequantize(x.double(), generator))
        return y.to(x.dtype), logdet

    def unrepresent(self, y: Tensor) -> Tensor:
        """Raw rows of inner samples y, grid columns snapped onto their grid."""
        return self.transform.snap(self.transform.inverse(y.double())).to(y.dtype)

    def standardize(self, x: Tensor) -> Tensor:
        """Per-column standardised z of raw rows x without dequantisation: the coordinates
        sample metrics use."""
        return self.transform.columns(x.double())[0].to(x.dtype)
