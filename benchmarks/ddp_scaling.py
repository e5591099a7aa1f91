"""Data-parallel scaling on this machine: samples/s of one run executed three ways.

One training config (flow matching, an MLP on two moons, `train.shards = 2`) is trained
through the command line as

    1 process x 1 thread        genlab train CONFIG --threads 1
    2 processes x 1 thread      genlab train CONFIG --nproc 2 --threads 1   (DDP over gloo)
    1 process x 2 threads       genlab train CONFIG --threads 2

Because the shards fix the noise of every example, the three runs compute the same
optimizer steps, and the table shows how far the final weights of each run are from the
first one (0 and "yes": equal bit for bit). Throughput is read from the run's
`metrics.jsonl` (steps/s of every log window after the first, times the global batch), so
start-up, the first window and the final checkpoint are not counted. On a machine shared
with other jobs the wall-clock numbers are unreliable; the load average is printed with them.

    PYTHONPATH=src .venv/bin/python benchmarks/ddp_scaling.py --steps 300 --batch 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

LAYOUTS = ((1, 1), (2, 1), (1, 2))  # (processes, threads per process)


def config_text(args: argparse.Namespace) -> str:
    """The TOML run config every layout trains."""
    return f"""
[data]
name = "moons"
n_train = 20000
n_test = 1000
[model]
preset = "flow-matching"
[net]
name = "mlp"
hidden = {args.hidden}
depth = {args.depth}
time_dim = 64
[train]
steps = {args.steps}
batch_size = {args.batch}
shards = 2
warmup_steps = 20
checkpoint_every = {args.steps}
log_every = {args.log_every}
progress = false
"""


def train(config: Path, run: Path, nproc: int, threads: int) -> None:
    """`genlab train` of `config` into `run` on `nproc` processes of `threads` threads."""
    cmd = [sys.executable, "-m", "genlab", "train", str(config), "--out", str(run)]
    cmd += ["--threads", str(threads)] + (["--nproc", str(nproc)] if nproc > 1 else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def samples_per_second(run: Path, log_every: int, batch: int) -> float:
    """Global samples/s over the log windows after the first."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    windows = [rec["steps_per_s"] for rec in lines if "steps_per_s" in rec][1:]
    seconds = sum(log_every / rate for rate in windows)
    return len(windows) * log_every * batch / seconds


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / latest / "model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1024, help="global batch per step")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "scaling.toml"
        config.write_text(config_text(args))
        rows = []
        for nproc, threads in LAYOUTS:
            run = Path(tmp) / f"p{nproc}-t{threads}"
            train(config, run, nproc, threads)
            rows.append((nproc, threads, samples_per_second(run, args.log_every, args.batch),
                         final_weights(run)))  # fmt: skip
    base_rate, base = rows[0][2], rows[0][3]
    print(f"flow matching, MLP {args.hidden} x {args.depth}, global batch {args.batch}, "
          f"{args.steps} steps, shards 2; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'processes':>9} {'threads':>7} {'samples/s':>10} {'speed-up':>8} "
          f"{'max |w - w(1x1)|':>17} {'equal':>5}")  # fmt: skip
    for nproc, threads, rate, weights in rows:
        diff = max_difference(weights, base)
        print(f"{nproc:>9} {threads:>7} {rate:>10.0f} {rate / base_rate:>8.2f} "
              f"{diff:>17.3g} {'yes' if diff == 0 else 'no':>5}")  # fmt: skip


if __name__ == "__main__":
    main()
