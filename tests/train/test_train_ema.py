"""EMA against closed forms: ema_n = d^n e_0 + (1 - d) sum_k d^(n-k) theta_k."""

from __future__ import annotations

import torch
from torch import nn

from genlab.train import EMA


def _param_model(value: float) -> nn.Module:
    model = nn.Module()
    model.p = nn.Parameter(torch.full((3,), value, dtype=torch.float64))
    return model


def test_constant_trajectory_matches_closed_form() -> None:
    d, n, e0, c = 0.9, 37, 2.0, -1.5
    model = _param_model(e0)
    ema = EMA(model, d)
    with torch.no_grad():
        model.p.fill_(c)
    for _ in range(n):
        ema.update(model)
    expected = c + d**n * (e0 - c)
    torch.testing.assert_close(ema.shadow["p"], torch.full((3,), expected, dtype=torch.float64))


def test_moving_trajectory_matches_weighted_sum() -> None:
    d, n, e0 = 0.8, 20, 1.0
    model = _param_model(e0)
    ema = EMA(model, d)
    thetas = [0.1 * k**1.5 for k in range(1, n + 1)]
    for theta in thetas:
        with torch.no_grad():
            model.p.fill_(theta)
        ema.update(model)
    expected = d**n * e0 + (1 - d) * sum(d ** (n - k) * th for k, th in enumerate(thetas, 1))
    torch.testing.assert_close(ema.shadow["p"], torch.full((3,), expected, dtype=torch.float64))


def test_buffers_are_copied_and_tied_weights_stay_tied() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 2, bias=False))
    model[2].weight = model[0].weight  # tie
    ema = EMA(model, 0.5)
    assert ema.shadow["0.weight"] is ema.shadow["2.weight"]
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)
        model[0].weight.add_(1.0)
    before = ema.shadow["0.weight"].clone()
    ema.update(model)
    torch.testing.assert_close(ema.shadow["1.running_mean"], torch.full((2,), 3.0))
    torch.testing.assert_close(ema.shadow["0.weight"], 0.5 * before + 0.5 * model[0].weight)
    fresh = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 2, bias=False))
    ema.copy_to(fresh)
    assert torch.equal(fresh[0].weight, ema.shadow["0.weight"])


def test_ema_skips_non_persistent_buffers() -> None:
    """A non-persistent buffer (e.g. DiT's fixed positional table) is not EMA state."""
    import torch
    from torch import nn

    from genlab.train.ema import EMA

    class WithTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("table", torch.ones(3), persistent=False)
            self.register_buffer("stat", torch.zeros(2))

    model = WithTable()
    ema = EMA(model, 0.9)
    model.stat.fill_(5.0)
    ema.update(model)
    assert "table" not in ema.state_dict()
    assert torch.equal(ema.state_dict()["stat"], torch.full((2,), 5.0))


def test_ema_decay_warm_up() -> None:
    """With a step count the effective decay is min(decay, (1 + k) / (10 + k))."""
    import torch
    from torch import nn

    from genlab.train.ema import EMA

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, 0.999)
    expected = 0.0
    for k in range(50):
        with torch.no_grad():
            model.weight.fill_(float(k + 1))
        ema.update(model, k)
        d = min(0.999, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * (k + 1)
    assert abs(ema.state_dict()["weight"].item() - expected) < 1e-4
