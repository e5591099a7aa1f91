"""Reflow (Liu et al. 2023): couplings, the pair loss, straightness, and that reflow straightens."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from genlab.data.toy import make_8gaussians
from genlab.diffusion.model import Diffusion
from genlab.diffusion.reflow import Reflow, couplings, euler, fm_velocity, straightness
from genlab.nets.mlp import MLP


class _Linear(nn.Module):
    """v(x, t) = x A^T + b, independent of t."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(a), nn.Parameter(b)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return x @ self.a.T + self.b


def test_straightness_is_zero_for_straight_paths_and_positive_for_curved() -> None:
    const = Reflow(_Linear(torch.zeros(2, 2), torch.tensor([1.0, -2.0])), (2,))
    assert straightness(const, 200, steps=10, generator=torch.Generator().manual_seed(0)) < 1e-10
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    curved = Reflow(_Linear(rotation, torch.zeros(2)), (2,))
    assert straightness(curved, 200, steps=10, generator=torch.Generator().manual_seed(0)) > 0.05


def test_euler_is_exact_for_constant_velocity_and_pair_loss_vanishes() -> None:
    model = Reflow(_Linear(torch.zeros(2, 2), torch.tensor([1.0, -2.0])), (2,))
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    x = euler(fm_velocity(model), z, 1)
    torch.testing.assert_close(x, z - torch.tensor([1.0, -2.0]))
    pairs = torch.stack([z, x], dim=1)  # (5, 2, 2): z - x = b is the exact straight velocity
    loss = model.loss(pairs).detach()
    assert loss.shape == (5,) and float(loss.abs().max()) < 1e-10
    with pytest.raises(ValueError, match="pairs"):
        model.loss(z)


def _train(model: nn.Module, data: Tensor, steps: int, lr: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model.loss(data[torch.randint(0, len(data), (256,), generator=gen)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_reflow_straightens_a_flow_matching_model() -> None:
    torch.manual_seed(0)
    data = make_8gaussians(4096, generator=torch.Generator().manual_seed(0))
    fm = Diffusion.from_preset("flow-matching", MLP(2, hidden=64, depth=2), (2,))
    _train(fm, data, 600, 3e-3, 1)
    pairs = couplings(fm, 4096, steps=10, generator=torch.Generator().manual_seed(2))
    assert pairs.shape == (4096, 2, 2)
    rf = Reflow.from_flow_matching(fm)
    _train(rf, pairs, 600, 1e-3, 3)
    gen = torch.Generator
    before = straightness(fm, 500, steps=10, generator=gen().manual_seed(4))
    after = straightness(rf, 500, steps=10, generator=gen().manual_seed(4))
    assert after < 0.5 * before
