"""Classifier-free guidance on a class-conditional digits model: FD and class accuracy vs w.

One UNet is trained under the `ddpm` preset with label dropout 0.15 (Ho & Salimans 2022,
Alg. 1) from ``configs/digits-ddpm-cond.toml`` and sampled with DPM-Solver++(2M) at 20 NFE
(each guided call with w not in {0, 1} runs the network on a doubled batch), requesting the
test split's labels, for w in {0, 1, 2, 4} (w = 0: unconditional, w = 1: conditional,
D_w = D_uncond + w (D_cond - D_uncond), eq. 6 of Ho & Salimans). Reported: FD / KID /
precision / recall against the 360 test images next to the floor (real train images vs test)
and the accuracy of the shipped digits network on the requested labels next to its accuracy
on real test images. Expect accuracy to rise and recall to fall as w grows.

    PYTHONPATH=src .venv/bin/python benchmarks/digits_guidance.py [--quick] [--threads 1]
        [--run-dir runs/bench-digits-ddpm-cond] [--steps 1500] [--n 500] [--channels 16]
        [--w 0,1,2,4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from digits_samplers import print_table, row, size_overrides, train_or_reuse

from genlab.runs import SampleSpec, make_data, test_labels

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits-ddpm-cond.toml"
COLUMNS = ("fd", "fd_floor", "kid", "precision", "recall", "accuracy", "accuracy_floor")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few samples: a smoke test")
    p.add_argument("--run-dir", type=Path, default=Path("runs/bench-digits-ddpm-cond"))
    p.add_argument("--steps", type=int, default=1500, help="training steps (a new run only)")
    p.add_argument("--n", type=int, default=500, help="samples per row")
    p.add_argument("--w", default="0,1,2,4", help="guidance scales, comma-separated")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--channels", type=int, default=None, help="UNet width (config: 16)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.n, args.nfe = min(args.steps, 30), min(args.n, 60), min(args.nfe, 6)
    run = train_or_reuse(CONFIG, args.run_dir, size_overrides(args))
    if run.model.null_label is None:
        raise SystemExit(f"{args.run_dir}: not trained with label dropout (no guidance)")
    labels = test_labels(make_data(run.config.data), args.n)
    rows = []
    for w in (float(v) for v in args.w.split(",")):
        m = row(run, SampleSpec(args.sampler, args.nfe), args.n, guidance=w, labels=labels)
        rows.append([f"{w:g}", *(f"{m[k]:.4g}" for k in COLUMNS), f"{m['seconds']:.0f}"])
        print(f"  w={w:g}: FD {m['fd']:.3g}, accuracy {m['accuracy']:.3f}", flush=True)
    head = ["w", "FD", "FD floor", "KID", "prec", "recall", "accuracy", "acc (real)", "s"]
    print_table(f"digits, class-conditional ddpm, {args.sampler}@{args.nfe}, {args.n} samples "
                "vs 360 test images", head, rows)  # fmt: skip


if __name__ == "__main__":
    main()
