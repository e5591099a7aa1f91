"""Samplers on one eps-prediction DDPM model of the 8x8 digits: FD vs NFE next to the floor.

One UNet is trained under the `ddpm` preset (1000 discrete linear betas, eps-prediction,
Ho et al. 2020) from ``configs/digits-ddpm.toml`` and sampled with

- DDPM ancestral sampling at 1000 NFE on the exact DDPM timesteps (Ho et al. 2020, Alg. 2),
- DDIM (eta = 0) at 10 / 20 / 50 / 100 NFE on DDIM's uniform timesteps (Song et al. 2021),
- DPM-Solver++(2M) (Lu et al. 2022) and UniPC (Zhao et al. 2023) on the Karras grid
  (Karras et al. 2022, eq. 5) at 10 / 20 NFE,

each scored by FD / KID / precision / recall against the 360 test images in the shipped
digits network's feature space, with the floor: as many real train images vs the test split.
The trained run is kept in ``--run-dir``; a second call reuses it (pass the same directory).

    PYTHONPATH=src .venv/bin/python benchmarks/digits_samplers.py [--quick] [--threads 1]
        [--run-dir runs/bench-digits-ddpm] [--steps 1500] [--n 500] [--channels 16]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from genlab.config import load_config
from genlab.runs import Run, SampleSpec, draw, evaluate_images, load_run, make_data, train_run
from genlab.train import latest_checkpoint

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits-ddpm.toml"
FULL = [("ddpm", "uniform_t", 1000), *(("ddim", "uniform_t", k) for k in (10, 20, 50, 100)),
        *((s, "karras", k) for s in ("dpmpp_2m", "unipc") for k in (10, 20))]  # fmt: skip
QUICK = [("ddpm", "uniform_t", 50), ("ddim", "uniform_t", 10), ("dpmpp_2m", "karras", 10)]
COLUMNS = ("fd", "fd_floor", "kid", "kid_floor", "precision", "recall")


def train_or_reuse(config: Path, run_dir: Path, overrides: list[str]) -> Run:
    """Train `config` (with `--set`-style overrides) into `run_dir` unless it holds a model."""
    if latest_checkpoint(run_dir) is None:
        start = time.perf_counter()
        result, _ = train_run(load_config(config, overrides), run_dir, progress=False)
        print(f"trained {result.steps} steps in {time.perf_counter() - start:.0f} s "
              f"into {run_dir}", flush=True)  # fmt: skip
    else:
        print(f"reusing {run_dir} (delete it to retrain)", flush=True)
    return load_run(run_dir)


def size_overrides(args: argparse.Namespace) -> list[str]:
    """`--set` items for the benchmark's training budget (one checkpoint, at the end, so a
    concurrent reader never picks up a half-trained run) and UNet width."""
    channels = 8 if args.quick else args.channels
    width = [] if channels is None else [f"net.channels={channels}", f"net.head_dim={channels}"]
    quick = ["train.batch_size=32"] if args.quick else []
    steps = [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]
    return [*steps, "train.progress=false", *width, *quick]


def row(run: Run, spec: SampleSpec, n: int, *, guidance: float | None = None,
        labels: torch.Tensor | None = None) -> dict[str, float]:  # fmt: skip
    """Image metrics of n samples drawn with `spec`, and the sampling time."""
    data = make_data(run.config.data)
    start = time.perf_counter()
    x = draw(run, n, replace(spec, guidance=guidance), seed=0, cond=labels)
    seconds = time.perf_counter() - start
    return {**evaluate_images(x, data, labels=labels, seed=0), "seconds": seconds}


def print_table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few samples: a smoke test")
    p.add_argument("--run-dir", type=Path, default=Path("runs/bench-digits-ddpm"))
    p.add_argument("--steps", type=int, default=1500, help="training steps (a new run only)")
    p.add_argument("--n", type=int, default=500, help="samples per row")
    p.add_argument("--channels", type=int, default=None, help="UNet width (config: 16)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.n = min(args.steps, 30), min(args.n, 60)
    run = train_or_reuse(CONFIG, args.run_dir, size_overrides(args))
    rows = []
    for sampler, schedule, nfe in QUICK if args.quick else FULL:
        m = row(run, SampleSpec(sampler, nfe, schedule), args.n)
        rows.append([sampler, schedule, str(nfe), *(f"{m[k]:.4g}" for k in COLUMNS),
                     f"{m['seconds']:.0f}"])  # fmt: skip
        print(f"  {sampler}@{nfe}: FD {m['fd']:.3g} (floor {m['fd_floor']:.3g})", flush=True)
    head = ["sampler", "grid", "NFE", "FD", "FD floor", "KID", "KID floor", "prec", "recall", "s"]
    print_table(f"digits, ddpm preset, {args.n} samples vs 360 test images "
                f"(floor: {args.n} real train images vs test)", head, rows)  # fmt: skip


if __name__ == "__main__":
    main()
