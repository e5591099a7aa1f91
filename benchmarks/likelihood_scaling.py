"""Exact-trace PF-ODE likelihood in 30 dimensions: seconds for 1,000 test points.

A flow-matching model with the usual 3x256 MLP is trained (cached under --cache) on a
30-dimensional Gaussian mixture (`GaussianMixture.random(k=8, dim=30, seed=0)`, an analytic
table whose exact NLL is known), then the exact-trace log-likelihood of --n test points is
timed through `genlab.eval.likelihood.nll_draws`, the path of `genlab eval --likelihood`:

- "batched": the d vector-Jacobian products of the exact trace in one backward pass
  (`genlab.ode.integrate.divergence`), batches of `EVAL_BATCH` examples;
- "per-dimension": one backward pass per dimension (the loop the batched trace replaces),
  timed on --n-loop points and scaled to --n;
- at the default tolerance (dopri5, rtol = atol = 1e-5) and at 1e-4, with the NLL gap
  between them and to the exact mixture NLL of the same points.

Each row reports process CPU seconds and wall seconds (on a loaded machine only the CPU
seconds per thread mean something; re-time wall seconds on an idle one).

Run: PYTHONPATH=src .venv/bin/python benchmarks/likelihood_scaling.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from genlab.config import LikelihoodSection
from genlab.data.gmm import GaussianMixture
from genlab.diffusion.model import Diffusion
from genlab.eval.likelihood import nll_draws
from genlab.families import LikelihoodBound
from genlab.nets.mlp import MLP
from genlab.ode import ODEOptions
from genlab.ode import integrate as ig
from genlab.train import TrainConfig, fit, load_weights


def trained_model(dim: int, seconds: float, cache: Path) -> tuple[Diffusion, GaussianMixture]:
    """Flow matching with a 3x256 MLP on the 30-D mixture, `seconds` of CPU training (cached)."""
    gmm = GaussianMixture.random(k=8, dim=dim, seed=0, std=0.5)
    data = gmm.sample(20_000, generator=torch.Generator().manual_seed(0)).float()
    torch.manual_seed(0)
    model = Diffusion.from_preset("flow-matching", MLP(dim, hidden=256, depth=3), (dim,))
    cfg = TrainConfig(steps=200_000, lr=2e-3, max_seconds=seconds, time_clock="cpu",
                      progress=False, checkpoint_every=5000)  # fmt: skip
    result = fit(model, data, cfg, cache / f"fm{dim}", resume=True)
    load_weights(result.checkpoint, model, ema=True)
    return model.eval(), gmm


def per_dimension(out: torch.Tensor, x: torch.Tensor, probes: object = None, *,
                  create_graph: bool = False) -> torch.Tensor:  # fmt: skip
    """The exact trace by one backward pass per dimension (what the batched one replaces)."""
    tr = torch.zeros(x.shape[0], dtype=out.dtype)
    for i in range(x.shape[1]):
        tr += torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)[0][:, i]
    return tr


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=30)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-loop", type=int, default=100)
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="runs/bench-likelihood-scaling")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, gmm = trained_model(args.dim, args.train_seconds, Path(args.cache))
    test = gmm.sample(args.n, generator=torch.Generator().manual_seed(1)).float()
    exact = float(-gmm.log_prob(test.double()).mean())

    def nll(x: torch.Tensor, tol: float) -> torch.Tensor:
        bound = LikelihoodBound("PF-ODE", {"ode": ODEOptions(rtol=tol, atol=tol)})
        return nll_draws(model, x, LikelihoodSection(draws=1), bound, progress=True)[0]

    print(f"{args.n} points, D = {args.dim}, flow matching MLP 3x256, exact trace, dopri5, "
          f"{args.threads} thread(s); exact mixture NLL {exact:.4f}")  # fmt: skip
    head = ("trace", "rtol=atol", "points", "cpu s", "wall s", "cpu s / 1000 pts", "NLL",
            "NLL - exact")  # fmt: skip
    print(f"{head[0]:<15}{head[1]:>10}{head[2]:>8}" + "".join(f"{h:>18}" for h in head[3:]))
    results = {}
    rows = [("batched", 1e-5, args.n), ("batched", 1e-4, args.n),
            ("per-dimension", 1e-5, args.n_loop)]  # fmt: skip
    for name, tol, n in rows:
        original = ig.divergence
        if name == "per-dimension":
            ig.divergence = per_dimension  # type: ignore[assignment]
        try:
            per, cpu, wall = timed(lambda n=n, tol=tol: nll(test[:n], tol))
        finally:
            ig.divergence = original
        results[(name, tol)] = per
        ref = float(-gmm.log_prob(test[:n].double()).mean())
        print(f"{name:<15}{tol:>10.0e}{n:>8}{cpu:>18.1f}{wall:>18.1f}{cpu * 1000 / n:>18.1f}"
              f"{float(per.mean()):>18.4f}{float(per.mean()) - ref:>18.4f}")  # fmt: skip
    gap = (results[("batched", 1e-4)] - results[("batched", 1e-5)]).abs()
    print(
        f"rtol 1e-4 vs 1e-5: mean |NLL difference| {float(gap.mean()):.4f} nats, "
        f"max {float(gap.max()):.4f}, difference of the means "
        f"{float(results[('batched', 1e-4)].mean() - results[('batched', 1e-5)].mean()):+.4f}"
    )
    loop = results[("per-dimension", 1e-5)]
    same = float((loop - results[("batched", 1e-5)][: loop.shape[0]]).abs().max())
    print(f"per-dimension vs batched trace on the same {loop.shape[0]} points: max |NLL "
          f"difference| {same:.2e} nats")  # fmt: skip


if __name__ == "__main__":
    main()
