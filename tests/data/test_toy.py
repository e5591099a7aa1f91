"""Toy 2-D datasets: contract over every set, plus distribution checks that can fail."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.toy import (
    CHECKERBOARD_HALF_WIDTH,
    CIRCLES_RADII,
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    RINGS_RADII,
    TOY_DATASETS,
    make_8gaussians,
    make_checkerboard,
    make_circles,
    make_rings,
    make_toy,
)

NAMES = sorted(TOY_DATASETS)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_dtype_scale(name: str) -> None:
    x = make_toy(name, 5000, generator=_gen(0))
    assert x.shape == (5000, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() <= 4.5  # roughly within [-4, 4]
    std = x.std(dim=0)
    assert (std > 0.5).all() and (std < 3.0).all()  # spread of order one
    assert x.mean(dim=0).abs().max() < 1.0  # roughly centred


@pytest.mark.parametrize("name", NAMES)
def test_generator_reproduces_and_seeds_differ(name: str) -> None:
    a = make_toy(name, 300, generator=_gen(7))
    b = make_toy(name, 300, generator=_gen(7))
    c = make_toy(name, 300, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_zero_points(name: str) -> None:
    assert make_toy(name, 0).shape == (0, 2)


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(ValueError, match="allowed: .*checkerboard"):
        make_toy("mooons", 10)


def test_negative_n_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        make_toy("moons", -1)


def test_circles_radii_concentrate_on_two_values() -> None:
    r = make_circles(20000, generator=_gen(1)).double().norm(dim=1)
    outer, inner = CIRCLES_RADII
    near_outer = (r - outer).abs() < 0.4
    near_inner = (r - inner).abs() < 0.4
    assert (near_outer | near_inner).float().mean() > 0.999
    assert abs(near_outer.double().mean().item() - 0.5) < 0.02  # equal mass
    assert abs(r[near_outer].mean().item() - outer) < 0.01
    assert abs(r[near_inner].mean().item() - inner) < 0.01


def test_rings_mass_proportional_to_radius() -> None:
    r = make_rings(40000, generator=_gen(2)).double().norm(dim=1)
    radii = torch.tensor(RINGS_RADII, dtype=torch.float64)
    nearest = (r[:, None] - radii[None]).abs().argmin(dim=1)
    assert ((r - radii[nearest]).abs() < 0.3).all()
    freq = torch.bincount(nearest, minlength=len(RINGS_RADII)).double() / r.numel()
    assert torch.allclose(freq, radii / radii.sum(), atol=0.01)


def test_8gaussians_has_eight_equal_modes_on_circle() -> None:
    x = make_8gaussians(16000, generator=_gen(3)).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    nearest = torch.cdist(x, centres).argmin(dim=1)  # (n,)
    counts = torch.bincount(nearest, minlength=8).double()
    assert torch.allclose(
        counts / counts.sum(), torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.015
    )
    for k in range(8):
        cluster = x[nearest == k]
        assert torch.allclose(cluster.mean(0), centres[k], atol=0.03)
        assert torch.allclose(
            cluster.std(0), torch.full((2,), EIGHT_GAUSSIANS_STD, dtype=torch.float64), rtol=0.08
        )


def test_checkerboard_points_only_on_black_squares_and_all_covered() -> None:
    x = make_checkerboard(16000, generator=_gen(4)).double()
    h = CHECKERBOARD_HALF_WIDTH
    assert (x.abs() <= h).all()
    col = torch.floor((x[:, 0] + h) / 2).long().clamp(0, 3)
    row = torch.floor((x[:, 1] + h) / 2).long().clamp(0, 3)
    assert ((col + row) % 2 == 0).all()  # never on a white square
    counts = torch.bincount(4 * row + col, minlength=16).double() / x.shape[0]
    black = (torch.arange(16) // 4 + torch.arange(16) % 4) % 2 == 0
    assert torch.allclose(counts[black], torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.015)
    # uniform within squares: position inside a square has mean 1, variance 1/3
    frac = torch.remainder(x + h, 2.0)
    assert torch.allclose(frac.mean(0), torch.ones(2, dtype=torch.float64), atol=0.03)
    assert torch.allclose(frac.var(0), torch.full((2,), 1 / 3, dtype=torch.float64), atol=0.02)
