"""PF-ODE likelihood against the exact log-density on analytic Gaussian mixtures.

For each bed, `genlab.diffusion.likelihood.log_prob` is run with the mixture's exact denoiser
on samples of the mixture and compared with `gmm.log_prob(x, sigma=0)`. Errors are in nats
per dimension. sigma_min is 1e-3 of the component std (bias ~ d sigma_min^2 / 2 s^2), and
sigma_max = 1000 (prior mismatch ~ E||x||^2 / 2 sigma_max^2). Hutchinson rows also give the
signed mean error (the estimate is unbiased: its mean error should be near 0 while single
estimates scatter).

Run: PYTHONPATH=src .venv/bin/python benchmarks/likelihood_gmm.py [--n 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.likelihood import pf_ode_log_prob
from genlab.ode import ODEOptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--sigma-max", type=float, default=1000.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # the machine is shared; 1 thread avoids oversubscription
    beds = {
        "ring8 D=2": (GaussianMixture.ring(k=8, radius=4.0, std=0.3), 0.3),
        "random16 D=16": (GaussianMixture.random(k=16, dim=16, seed=0), 0.5),
        "random16 D=64": (GaussianMixture.random(k=16, dim=64), 0.5),
    }
    runs = [("exact", 1), ("hutchinson", 1), ("hutchinson", 16)]
    print(f"n={args.n} per bed, dopri5 rtol=atol={args.tol}, float64, sigma_max={args.sigma_max}")
    head = ("bed", "trace", "probes", "mean|err|/d", "max|err|/d", "mean err/d", "NFE", "time s")
    print(f"{head[0]:<15}{head[1]:<12}" + "".join(f"{h:>12}" for h in head[2:]))
    for name, (gmm, std) in beds.items():
        x = gmm.sample(args.n, generator=torch.Generator().manual_seed(1))
        exact = gmm.log_prob(x, sigma=0.0)  # (n,)
        for trace, k in runs:
            start = time.perf_counter()
            ode = ODEOptions(trace=trace, probes=k, rtol=args.tol, atol=args.tol)
            r = pf_ode_log_prob(gmm, x, sigma_min=1e-3 * std, sigma_max=args.sigma_max, ode=ode,
                                generator=torch.Generator().manual_seed(2))  # fmt: skip
            sec = time.perf_counter() - start
            err = (r.log_prob - exact) / gmm.dim  # (n,)
            print(f"{name:<15}{trace:<12}{k:>12}{err.abs().mean():>12.5f}{err.abs().max():>12.5f}"
                  f"{err.mean():>12.5f}{r.nfe:>12}{sec:>12.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
