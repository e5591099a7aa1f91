"""EDM vs DDPM vs flow matching on the 8x8 digits at the same network, budget and NFE.

Three presets of the one denoising objective -- `edm` (Karras et al. 2022: preconditioning,
log-normal sigmas, EDM weighting), `ddpm` (Ho et al. 2020: discrete betas, eps, uniform k)
and `flow-matching` (Lipman et al. 2023: linear path, velocity, uniform t) -- each train the
same UNet (``configs/digits-{edm,ddpm,fm}.toml``: same net, steps, batch, learning rate, EMA)
and are sampled with the same samplers at the same NFE (Heun at 35 NFE and DPM-Solver++(2M) at
20 NFE, both on the Karras grid). Reported: FD / KID / precision / recall against the 360 test
images, with the floor (real train images vs test). Runs are kept under ``--run-dir``
(one sub-directory per preset) and reused by later calls.

    PYTHONPATH=src .venv/bin/python benchmarks/digits_presets.py [--quick] [--threads 1]
        [--run-dir runs/bench-digits-presets] [--steps 1500] [--n 500] [--channels 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from digits_samplers import print_table, row, size_overrides, train_or_reuse

from genlab.runs import SampleSpec

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PRESETS = {"edm": "digits-edm.toml", "flow-matching": "digits-fm.toml", "ddpm": "digits-ddpm.toml"}
SPECS = (SampleSpec("heun", 35, "karras"), SampleSpec("dpmpp_2m", 20, "karras"))
COLUMNS = ("fd", "fd_floor", "kid", "kid_floor", "precision", "recall")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny models, few samples: a smoke test")
    p.add_argument("--run-dir", type=Path, default=Path("runs/bench-digits-presets"))
    p.add_argument("--steps", type=int, default=1500, help="training steps (new runs only)")
    p.add_argument("--n", type=int, default=500, help="samples per row")
    p.add_argument("--channels", type=int, default=None, help="UNet width (config: 16)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.n = min(args.steps, 30), min(args.n, 60)
    specs = SPECS[1:] if args.quick else SPECS
    rows = []
    for preset, config in PRESETS.items():
        run = train_or_reuse(CONFIGS / config, args.run_dir / preset, size_overrides(args))
        for spec in specs:
            m = row(run, spec, args.n)
            rows.append([preset, str(spec.sampler), str(spec.nfe),
                         *(f"{m[k]:.4g}" for k in COLUMNS), f"{m['seconds']:.0f}"])  # fmt: skip
            print(f"  {preset} {spec.sampler}@{spec.nfe}: FD {m['fd']:.3g}", flush=True)
    head = ["preset", "sampler", "NFE", "FD", "FD floor", "KID", "KID floor", "prec", "recall",
            "s"]  # fmt: skip
    print_table(f"digits, same UNet and {args.steps} steps per preset, {args.n} samples vs 360 "
                "test images", head, rows)  # fmt: skip


if __name__ == "__main__":
    main()
