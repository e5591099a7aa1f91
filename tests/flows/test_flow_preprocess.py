"""Dequantisation, logit and bits/dim sanity checks of the anchor protocol."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.dequantize import bits_per_dim, dequantize, logit_forward, logit_inverse
from genlab.flows import Logit

D, LEVELS = 64, 17


def test_uniform_density_gives_log2_levels_bpd() -> None:
    assert bits_per_dim(0.0, D, LEVELS) == pytest.approx(math.log2(LEVELS), rel=1e-15)
    nll = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(nll, D, LEVELS), torch.full_like(nll, math.log2(17)))


def test_uniform_pushed_through_logit_gives_log2_levels_bpd() -> None:
    # x ~ U[0,1)^D pushed through y = logit(...): p_Y(y) = 1 / |dy/dx| at x = logit^-1(y);
    # ln p_X(x) = ln p_Y(y) + logdet must then be 0, i.e. exactly log2(17) bpd.
    x = torch.rand(10, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, logdet = Logit(0.05)(x)
    _, logdet_at_inverse = logit_forward(logit_inverse(y, 0.05), 0.05)
    log_p_x = -logdet_at_inverse + logdet
    bpd = bits_per_dim(-log_p_x, D, LEVELS)
    torch.testing.assert_close(bpd, torch.full((10,), math.log2(17), dtype=torch.float64))


def test_logit_logdet_formula() -> None:
    x = torch.tensor([[0.0, 0.5, 0.999]], dtype=torch.float64)
    _, ld = logit_forward(x, 0.05)
    s = 0.05 + 0.9 * x
    expected = (math.log(0.9) - torch.log(s) - torch.log(1 - s)).sum(1)
    torch.testing.assert_close(ld, expected)


def test_dequantize_stays_in_its_cell_and_follows_the_generator() -> None:
    v = torch.randint(0, LEVELS, (100, 1, 8, 8)).float()
    a = dequantize(v, LEVELS, generator=torch.Generator().manual_seed(3))
    b = dequantize(v, LEVELS, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a >= v / LEVELS).all() and (a < (v + 1) / LEVELS).all()
    assert torch.equal(torch.floor(a * LEVELS), v)
