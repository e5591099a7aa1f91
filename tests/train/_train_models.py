"""Tiny models shared by the trainer tests (imported by tests and by the subprocess script)."""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor, nn


class NoisyMLP(nn.Module):
    """A 2-layer MLP with a denoising loss that draws its own noise (tests per-step seeding)."""

    def __init__(self, dim: int = 2, hidden: int = 16, n_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, hidden)
        self.inp = nn.Linear(dim + 1, hidden)
        self.out = nn.Linear(hidden, dim)
        self.sleep = float(os.environ.get("GENLAB_TEST_SLEEP", "0"))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.sleep:
            time.sleep(self.sleep)
        t = torch.rand(x.shape[0], 1, dtype=x.dtype, device=x.device)  # (B, 1)
        eps = torch.randn_like(x)  # (B, D)
        xt = (1 - t) * x + t * eps
        h = self.inp(torch.cat([xt, t], dim=1))  # (B, H)
        if cond is not None:
            h = h + self.embed(cond)
        pred = self.out(torch.relu(h))  # (B, D)
        return ((pred - (eps - x)) ** 2).mean(dim=1)  # (B,)


def make_data(n: int = 64, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    data = torch.randn(n, 2, generator=gen)  # (N, 2)
    cond = torch.randint(0, 3, (n,), generator=gen)  # (N,)
    return data, cond


def make_model(seed: int = 0) -> NoisyMLP:
    torch.manual_seed(seed)
    return NoisyMLP()


class Crash(Exception):
    """Stands in for a kill at a chosen moment (raised by patched functions or models)."""


class LinearRegression(nn.Module):
    """Deterministic float64 loss: data rows are (x1, x2, y); loss is the squared error."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, -0.25], dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        pred = x[:, :2] @ self.w + self.b  # (B,)
        return (pred - x[:, 2]) ** 2  # (B,)


class FailAt(NoisyMLP):
    """NoisyMLP whose loss misbehaves from its `at`-th call on (1-based).

    mode "nan": returns NaN losses; "inf_grad": finite loss with an infinite gradient;
    "crash": raises Crash (a kill in the middle of a step).
    """

    def __init__(self, at: int, mode: str) -> None:
        super().__init__()
        self.at, self.mode, self.calls = at, mode, 0

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.calls += 1
        value = super().loss(x, cond)  # (B,)
        if self.calls < self.at:
            return value
        if self.mode == "nan":
            return value * float("nan")
        if self.mode == "inf_grad":
            w = self.out.bias[0]
            return value + torch.sqrt(w - w.detach())  # value unchanged, d/dw = inf
        raise Crash(f"crash at loss call {self.calls}")


def make_failing(at: int, mode: str, seed: int = 0) -> FailAt:
    """FailAt with the same initial weights as make_model(seed)."""
    torch.manual_seed(seed)
    return FailAt(at, mode)


class Overfit(nn.Module):
    """A big tanh MLP regression y ~ f(x) with input jitter: overfits a tiny noisy dataset.

    Rows of the data are (x, y). The jitter makes the loss stochastic (it draws from the global
    generator), like dequantisation noise.
    """

    def __init__(self, hidden: int = 64, jitter: float = 0.02) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, 1))  # fmt: skip
        self.jitter = jitter
        self.sleep = float(os.environ.get("GENLAB_TEST_SLEEP", "0"))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.sleep:
            time.sleep(self.sleep)
        inp = x[:, :1] + self.jitter * torch.randn_like(x[:, :1])  # (B, 1)
        return (self.net(inp).squeeze(1) - x[:, 1]) ** 2  # (B,)


def make_overfit_data(n: int = 24, seed: int = 7) -> Tensor:
    """(n, 2) rows (x, sin(3x) + 0.5 noise) with x uniform on [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=gen) * 2 - 1  # (n,)
    y = torch.sin(3 * x) + 0.5 * torch.randn(n, generator=gen)  # (n,)
    return torch.stack([x, y], dim=1)


def make_overfit(seed: int = 0) -> Overfit:
    torch.manual_seed(seed)
    return Overfit()
