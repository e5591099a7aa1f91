"""Warm-up schedule, gradient accumulation, bf16 and the loss contract, through iter_train."""

from __future__ import annotations

import math

import pytest
import torch
from _train_models import LinearRegression, make_data, make_model
from pydantic import ValidationError

from genlab.errors import ConfigError
from genlab.train import TrainConfig, TrainState, derive_seed, fit, iter_train, warmup_lr


def test_warmup_values() -> None:
    assert [warmup_lr(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_lr(s, 3e-4, 0) for s in range(3)] == [3e-4] * 3


def test_iter_train_uses_warmup_lr() -> None:
    data, cond = make_data()
    cfg = TrainConfig(steps=6, batch_size=8, lr=2e-3, warmup_steps=4, progress=False)
    state = TrainState.create(make_model(), cfg)
    lrs = []
    for info in iter_train(state, data, cfg, cond=cond):
        lrs.append(info.lr)
        assert state.optimizer.param_groups[0]["lr"] == info.lr
    assert lrs == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3, 2e-3])


def _regression_data(n: int = 27) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)  # (N, 2)
    y = x @ torch.tensor([2.0, -1.0], dtype=torch.float64) + 0.1  # (N,)
    return torch.cat([x, y[:, None]], dim=1)  # (N, 3)


@pytest.mark.parametrize("k", [2, 4])
def test_grad_accumulation_equals_one_big_batch(k: int) -> None:
    """k micro-batches of b examples == one batch of k*b (same examples, the loss is a mean)."""
    data, b, results = _regression_data(), 4, []
    for accum, batch in [(k, b), (1, k * b)]:
        cfg = TrainConfig(steps=7, batch_size=batch, grad_accum=accum, lr=0.05, warmup_steps=3,
                          grad_clip=0.5, ema_decay=0.9, progress=False)  # fmt: skip
        model = LinearRegression()
        state = TrainState.create(model, cfg)
        losses = [float(info.loss) for info in iter_train(state, data, cfg)]
        results.append((losses, dict(model.state_dict()), state.ema.state_dict()))
    (loss_a, model_a, ema_a), (loss_b, model_b, ema_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for name in model_a:
        torch.testing.assert_close(model_a[name], model_b[name], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ema_a[name], ema_b[name], rtol=1e-12, atol=1e-14)


def test_bf16_runs_with_finite_loss(tmp_path) -> None:
    data, cond = make_data()
    cfg = TrainConfig(steps=6, batch_size=16, bf16=True, log_every=2, progress=False)
    result = fit(make_model(), data, cfg, tmp_path / "run", cond=cond)
    assert result.final_loss is not None and math.isfinite(result.final_loss)


def test_loss_must_be_per_example() -> None:
    class Reduced(LinearRegression):
        def loss(self, x, cond=None):
            return super().loss(x, cond).mean()

    cfg = TrainConfig(steps=2, batch_size=4, progress=False)
    state = TrainState.create(Reduced(), cfg)
    with pytest.raises(ValueError, match="per-example"):
        next(iter_train(state, _regression_data(), cfg))


def test_same_seed_same_run_other_seed_differs() -> None:
    data, cond = make_data()
    finals = []
    for seed in (0, 0, 1):
        cfg = TrainConfig(steps=5, batch_size=8, seed=seed, progress=False)
        model = make_model()
        for _ in iter_train(TrainState.create(model, cfg), data, cfg, cond=cond):
            pass
        finals.append(model.out.weight.detach().clone())
    assert torch.equal(finals[0], finals[1])
    assert not torch.equal(finals[0], finals[2])
    assert derive_seed(0, "step", 1) != derive_seed(0, "epoch", 1) != derive_seed(1, "step", 1)


def test_config_round_trip_and_validation() -> None:
    cfg = TrainConfig(steps=10, betas=[0.8, 0.9], grad_clip=0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.betas == (0.8, 0.9)
    with pytest.raises(ConfigError, match="unknown train setting"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValidationError, match="grad_accum"):
        TrainConfig(grad_accum=0)
