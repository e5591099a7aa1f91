"""Per-step overhead of the genlab trainer against a bare PyTorch loop.

Both loops train the same 3x256 MLP with a flow-matching-style denoising loss on 2-D data,
batch 256, AdamW. The bare loop does only: sample a batch, forward, backward, step. The
trainer adds per-step seeding, warm-up, gradient clipping, the finiteness check and EMA;
`fit` additionally writes metrics every 50 steps and one final checkpoint.

Run: .venv/bin/python benchmarks/trainer_overhead.py [--steps 200] [--repeats 7] [--threads 1]
`bare` and `iter_train` are timed in alternating blocks of --steps steps (robust to machine
load); `fit` is timed between its log callbacks in separate whole runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from genlab.train import TrainConfig, TrainState, fit, iter_train


class MLPDenoiser(nn.Module):
    """3 hidden layers of 256; loss: velocity regression on x_t = (1 - t) x + t eps."""

    def __init__(self, dim: int = 2, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, dim),
        )  # fmt: skip

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        t = torch.rand(x.shape[0], 1)  # (B, 1)
        eps = torch.randn_like(x)  # (B, 2)
        xt = (1 - t) * x + t * eps  # (B, 2)
        pred = self.net(torch.cat([xt, t], dim=1))  # (B, 2)
        return ((pred - (eps - x)) ** 2).mean(dim=1)  # (B,)


def make_model() -> MLPDenoiser:
    torch.manual_seed(0)
    return MLPDenoiser()


def bare_loop(data: Tensor, batch: int) -> Iterator[None]:
    """The reference: sample a batch, forward, backward, AdamW step; yields after each step."""
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    while True:
        x = data[torch.randint(data.shape[0], (batch,))]  # (B, 2)
        loss = model.loss(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield


def trainer_loop(data: Tensor, batch: int) -> Iterator[None]:
    """genlab's iter_train with default settings (clipping 1.0, EMA 0.999, warm-up 100)."""
    cfg = TrainConfig(steps=10**9, batch_size=batch, progress=False)
    for _ in iter_train(TrainState.create(make_model(), cfg), data, cfg):
        yield


def interleaved_ms(
    data: Tensor, steps: int, warmup: int, repeats: int, batch: int
) -> dict[str, float]:
    """Median ms/step of both loops, timed in alternating blocks so machine load hits both."""
    loops = {"bare": bare_loop(data, batch), "iter_train": trainer_loop(data, batch)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for loop in loops.values():
        for _ in range(warmup):
            next(loop)
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            for _ in range(steps):
                next(loop)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def fit_ms(data: Tensor, steps: int, warmup: int, batch: int) -> float:
    cfg = TrainConfig(steps=warmup + steps, batch_size=batch, progress=False,
                      checkpoint_every=10**9, log_every=50)  # fmt: skip
    marks: dict[int, float] = {}

    def on_log(record: dict) -> None:
        marks[record["step"]] = time.perf_counter()

    with tempfile.TemporaryDirectory() as run_dir:
        fit(make_model(), data, cfg, run_dir, on_log=on_log)
    first = min(s for s in marks if s >= warmup)
    last = max(marks)
    return (marks[last] - marks[first]) / (last - first) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = torch.randn(8192, 2, generator=torch.Generator().manual_seed(0))  # (N, 2)
    medians = interleaved_ms(data, args.steps, args.warmup, args.repeats, args.batch)
    # fit is a whole run: pair each fit run with a bare block timed right before it, so the
    # ratio compares runs under the same machine load.
    bare_blocks, fit_ratios = bare_loop(data, args.batch), []
    for _ in range(args.warmup):
        next(bare_blocks)
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            next(bare_blocks)
        bare_ms = (time.perf_counter() - start) / args.steps * 1e3
        fit_ratios.append(fit_ms(data, args.steps, args.warmup, args.batch) / bare_ms)
    bare = medians["bare"]
    medians["fit"] = statistics.median(fit_ratios) * bare
    print(f"threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats} "
          f"batch={args.batch} (median ms/step)")  # fmt: skip
    print(f"{'loop':<12}{'ms/step':>10}{'ratio':>8}")
    for name, median in medians.items():
        print(f"{name:<12}{median:>10.3f}{median / bare:>8.3f}")


if __name__ == "__main__":
    main()
