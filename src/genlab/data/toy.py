"""Two-dimensional toy distributions for quick experiments and tests.

Every sampler has the signature ``make_<name>(n, *, generator=None) -> Tensor``
and returns ``n`` float32 points of shape ``(n, 2)``, drawn exactly with torch
random functions so that a seeded ``torch.Generator`` reproduces the result.
All sets live roughly within ``[-4, 4]^2`` with a spread of order one, so one
model configuration fits all of them.

The shapes follow the sets that became customary in the generative-model
literature: moons and circles (as popularised by scikit-learn), the 2-D
cross-section of the swiss roll (Tenenbaum, de Silva & Langford, Science 2000),
and the 8 Gaussians, checkerboard, pinwheel, spirals and rings benchmarks of
Grathwohl et al., *FFJORD*, ICLR 2019 (the pinwheel goes back to Johnson et
al., *Composing graphical models with neural networks*, NeurIPS 2016). The
constants here are chosen for this library, not copied from any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "CIRCLES_RADII",
    "RINGS_RADII",
    "CHECKERBOARD_HALF_WIDTH",
    "TOY_DATASETS",
    "make_toy",
    "make_moons",
    "make_circles",
    "make_swissroll",
    "make_8gaussians",
    "make_checkerboard",
    "make_pinwheel",
    "make_spirals",
    "make_rings",
]

EIGHT_GAUSSIANS_RADIUS = 2.0 * math.sqrt(2.0)  # distance of each mode from the origin
EIGHT_GAUSSIANS_STD = 0.25  # per-coordinate standard deviation of each mode
CIRCLES_RADII = (3.0, 1.5)  # outer, inner
RINGS_RADII = (0.8, 1.6, 2.4, 3.2)
CHECKERBOARD_HALF_WIDTH = 4.0  # the board is [-4, 4]^2 split into 4 x 4 squares of side 2


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)  # (n,) uniform [0, 1)


def _randn(*shape: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _polar(radius: Tensor, angle: Tensor) -> Tensor:
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)  # (n, 2)


def make_moons(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved half circles of radius 2 with Gaussian noise (std 0.2), centred."""
    _check_n(n)
    label = torch.randint(0, 2, (n,), generator=generator)  # (n,)
    angle = math.pi * _rand(n, generator)  # (n,)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
    lower = torch.stack([1.0 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)  # (n, 2)
    x = torch.where(label[:, None] == 0, upper, lower)
    x = 2.0 * (x - torch.tensor([0.5, 0.25], dtype=torch.float64))
    return (x + 0.2 * _randn(n, 2, generator=generator)).float()


def make_circles(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Two concentric circles of radii ``CIRCLES_RADII`` (equal mass), radial noise std 0.08."""
    _check_n(n)
    label = torch.randint(0, 2, (n,), generator=generator)  # (n,)
    radius = torch.tensor(CIRCLES_RADII, dtype=torch.float64)[label]
    radius = radius + 0.08 * _randn(n, generator=generator)
    angle = 2.0 * math.pi * _rand(n, generator)
    return _polar(radius, angle).float()


def make_swissroll(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """The 2-D swiss roll ``t (cos t, sin t) / 5`` with ``t`` uniform in [1.5 pi, 4.5 pi].

    Isotropic Gaussian noise of standard deviation 0.1 is added.
    """
    _check_n(n)
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, generator))  # (n,)
    x = _polar(t / 5.0, t)
    return (x + 0.1 * _randn(n, 2, generator=generator)).float()


def make_8gaussians(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Equal mixture of 8 isotropic Gaussians on a circle.

    Mode ``k`` is centred at ``EIGHT_GAUSSIANS_RADIUS * (cos(k pi / 4), sin(k pi / 4))``
    with standard deviation ``EIGHT_GAUSSIANS_STD`` per coordinate.
    """
    _check_n(n)
    k = torch.randint(0, 8, (n,), generator=generator).to(torch.float64)  # (n,)
    radius = torch.full((n,), EIGHT_GAUSSIANS_RADIUS, dtype=torch.float64)
    centres = _polar(radius, k * math.pi / 4.0)  # (n, 2)
    return (centres + EIGHT_GAUSSIANS_STD * _randn(n, 2, generator=generator)).float()


def make_checkerboard(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the 8 "black" squares of a 4 x 4 board covering ``[-4, 4]^2``.

    Square ``(i, j)`` (column ``i``, row ``j``, counted from the lower left, side 2)
    is black when ``i + j`` is even, so the lower-left square is black.
    """
    _check_n(n)
    cell = torch.randint(0, 8, (n,), generator=generator)  # (n,) index among black squares
    row = cell // 2  # (n,) 0..3
    col = 2 * (cell % 2) + row % 2  # (n,) makes col + row even
    offset = 2.0 * _rand(n, generator), 2.0 * _rand(n, generator)
    x = -CHECKERBOARD_HALF_WIDTH + 2.0 * col.to(torch.float64) + offset[0]
    y = -CHECKERBOARD_HALF_WIDTH + 2.0 * row.to(torch.float64) + offset[1]
    return torch.stack([x, y], dim=1).float()


def make_pinwheel(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Five curved arms (after Johnson et al., 2016).

    A point ``(r, s)`` with ``r ~ N(1, 0.3^2)`` and ``s ~ N(0, 0.08^2)`` is rotated
    by its arm's base angle ``2 pi k / 5`` plus a twist ``0.25 * exp(r)``, then
    scaled by 1.6.
    """
    _check_n(n)
    k = torch.randint(0, 5, (n,), generator=generator).to(torch.float64)  # (n,)
    eps = _randn(n, 2, generator=generator)  # (n, 2)
    r = 1.0 + 0.3 * eps[:, 0]
    s = 0.08 * eps[:, 1]
    angle = 2.0 * math.pi * k / 5.0 + 0.25 * torch.exp(r)
    c, si = torch.cos(angle), torch.sin(angle)
    x = torch.stack([c * r - si * s, si * r + c * s], dim=1)  # (n, 2) rotation of (r, s)
    return (1.6 * x).float()


def make_spirals(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved Archimedean spirals ``+-(t/3)(-cos t, sin t)``, noise std 0.1.

    The angle is ``t = 3 pi sqrt(u)`` with ``u`` uniform, which spreads points
    roughly evenly along the arc length.
    """
    _check_n(n)
    t = 3.0 * math.pi * torch.sqrt(_rand(n, generator))  # (n,)
    arm = 2.0 * torch.randint(0, 2, (n,), generator=generator).to(torch.float64) - 1.0
    x = torch.stack([-torch.cos(t), torch.sin(t)], dim=1) * (arm * t / 3.0)[:, None]
    return (x + 0.1 * _randn(n, 2, generator=generator)).float()


def make_rings(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Four concentric rings of radii ``RINGS_RADII``, radial noise std 0.06.

    A ring is chosen with probability proportional to its radius, so the density
    along each circle's arc is the same.
    """
    _check_n(n)
    radii = torch.tensor(RINGS_RADII, dtype=torch.float64)
    if n == 0:
        return torch.zeros(0, 2)
    ring = torch.multinomial(radii, n, replacement=True, generator=generator)  # (n,)
    radius = radii[ring] + 0.06 * _randn(n, generator=generator)
    angle = 2.0 * math.pi * _rand(n, generator)
    return _polar(radius, angle).float()


TOY_DATASETS: dict[str, Callable[..., Tensor]] = {
    "moons": make_moons,
    "circles": make_circles,
    "swissroll": make_swissroll,
    "8gaussians": make_8gaussians,
    "checkerboard": make_checkerboard,
    "pinwheel": make_pinwheel,
    "spirals": make_spirals,
    "rings": make_rings,
}


def make_toy(name: str, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points of the toy set ``name`` (a key of ``TOY_DATASETS``)."""
    try:
        make = TOY_DATASETS[name]
    except KeyError:
        allowed = ", ".join(sorted(TOY_DATASETS))
        raise ValueError(f"unknown toy dataset {name!r}; allowed: {allowed}") from None
    return make(n, generator=generator)
