"""The cost of latent diffusion against pixel-space diffusion on the 8x8 digits: training CPU
seconds to reach a common FD, per-step time, and sampling time per image at NFE 20.

Two unconditional diffusion models of one preset (`--preset`: DDPM, Ho et al. 2020, by
default; flow matching, Lipman et al. 2023, ...) with the same UNet options are trained for
the same number of steps at the same batch size: one on the pixels (1x8x8), one
(`latent-diffusion`, Rombach et al. 2022) on the 4x4x4 latents of the KL autoencoder of
``configs/digits-kl-ae.toml`` (trained first; its CPU seconds are reported and added to
the latent model's in the "incl. autoencoder" column). Every
`--checkpoint-every` steps a checkpoint is kept; afterwards each checkpoint (EMA weights)
draws `--n` images with DPM-Solver++(2M) at NFE 20, and their Frechet distance to the 360
test images in the shipped digits network's features is measured. CPU seconds are those
of this process (`time.process_time`, one torch thread), recorded at every log line of
training, so the checkpoint's CPU time excludes the evaluations.

The table reports, for FD levels both models reach, the first checkpoint at or below the
level and its CPU seconds; the common level is the lowest FD both reach. Sampling time is
the wall time per image of a batch of `--n` at NFE 20 (the latent model's includes the
decoder), best of three.

    PYTHONPATH=src .venv/bin/python benchmarks/latent_digits.py --threads 1 [--steps 2000]
        [--checkpoint-every 250] [--n 360] [--out benchmarks/results/latent_digits.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genlab.config import RunConfig, load_config
from genlab.runs import SampleSpec, draw, evaluate_images, load_run, make_data, train_run

ROOT = Path(__file__).resolve().parent.parent
AE_CONFIG = ROOT / "configs" / "digits-kl-ae.toml"
NET = {"name": "unet", "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
       "attention_levels": [1], "head_dim": 16}  # fmt: skip
SPEC = SampleSpec("dpmpp_2m", 20)


def _train_section(args: argparse.Namespace) -> dict[str, Any]:
    every = args.checkpoint_every
    return {"steps": args.steps, "batch_size": args.batch_size, "lr": 2e-3,
            "warmup_steps": 100, "ema_decay": 0.995, "checkpoint_every": every,
            "keep_checkpoints": args.steps // every, "log_every": every,
            "progress": False}  # fmt: skip


def configs(args: argparse.Namespace, ae_dir: Path) -> dict[str, RunConfig]:
    train = _train_section(args)
    pixel = {"data": {"name": "digits"}, "model": {"preset": args.preset}, "net": NET,
             "train": train}  # fmt: skip
    latent = {"data": {"name": "digits"}, "model": {"family": "latent-diffusion"},
              "latent-diffusion": {"autoencoder": str(ae_dir), "preset": args.preset},
              "net": NET, "train": train}  # fmt: skip
    return {"pixel": RunConfig.from_dict(pixel), "latent": RunConfig.from_dict(latent)}


def timed_training(cfg: RunConfig, run_dir: Path) -> tuple[dict[int, float], float]:
    """Train `cfg` into `run_dir`: (CPU seconds at every logged step, total CPU seconds)."""
    start = time.process_time()
    at: dict[int, float] = {}

    def log(line: dict[str, Any]) -> None:
        at[int(line["step"])] = time.process_time() - start

    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark owns its run directories
    train_run(cfg, run_dir, on_log=log)
    return at, time.process_time() - start


def fd_curve(run_dir: Path, steps: list[int], n: int) -> dict[int, float]:
    """FD of n samples (NFE 20) of every checkpoint."""
    out = {}
    for step in steps:
        run = load_run(run_dir, checkpoint=str(step))
        data = make_data(run.config.data)
        x = draw(run, n, SPEC, seed=0)
        out[step] = evaluate_images(x, data, seed=0)["fd"]
        print(f"  {run_dir.name} step {step}: FD {out[step]:.2f}", flush=True)
    return out


def sampling_seconds(run_dir: Path, n: int) -> float:
    """Wall seconds per image of one batch of n at NFE 20 (best of three)."""
    run = load_run(run_dir)
    times = []
    for seed in range(3):
        t = time.perf_counter()
        draw(run, n, SPEC, seed=seed)
        times.append(time.perf_counter() - t)
    return min(times) / n


def first_reaching(curve: dict[int, float], level: float) -> int | None:
    return next((s for s in sorted(curve) if curve[s] <= level), None)


def report(args: argparse.Namespace, res: dict[str, Any]) -> str:
    pix, lat, ae_cpu = res["pixel"], res["latent"], res["ae_cpu"]
    common = max(min(pix["fd"].values()), min(lat["fd"].values()))
    levels = sorted({common, *(v for v in (40.0, 20.0, 10.0) if v > common)}, reverse=True)
    lines = [
        f"# Latent vs pixel-space diffusion on digits (cost, preset {args.preset})",
        "",
        f"`PYTHONPATH=src python benchmarks/latent_digits.py --threads {args.threads} "
        f"--preset {args.preset} --steps {args.steps} --checkpoint-every "
        f"{args.checkpoint_every} --n {args.n}`",
        "",
        f"Unconditional `{args.preset}` preset, UNet {NET['channels']}x{NET['channel_mult']} "
        f"(attention at the second level), batch {args.batch_size}, {args.steps} steps each; "
        f"FD of {args.n} samples (DPM-Solver++(2M), NFE 20) to the 360 test images. "
        "Latent: 4x4x4 latents of the KL autoencoder of configs/digits-kl-ae.toml "
        f"({res['ae_steps']} steps, {ae_cpu:.0f} CPU s, test recon MSE {res['ae_mse']:.4f}). "
        "CPU seconds of one torch thread; the machine ran another job at the same time.",
        "",
        "| FD level | pixel: step | pixel: CPU s | latent: step | latent: CPU s | "
        "latent incl. autoencoder: CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for level in levels:
        cells = []
        for r in (pix, lat):
            s = first_reaching(r["fd"], level)
            cells += ["-", "-"] if s is None else [str(s), f"{r['cpu'][s]:.0f}"]
        s = first_reaching(lat["fd"], level)
        total = "-" if s is None else f"{lat['cpu'][s] + ae_cpu:.0f}"
        mark = " (common)" if level == common else ""
        lines.append(f"| {level:.2f}{mark} | {' | '.join(cells)} | {total} |")
    lines += ["", "| model | CPU ms / step | final FD | best FD | sampling ms / image (NFE 20) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, r in (("pixel 1x8x8", pix), ("latent 4x4x4", lat)):
        per_step = 1000 * r["cpu_total"] / args.steps
        fds = r["fd"]
        lines.append(f"| {name} | {per_step:.1f} | {fds[max(fds)]:.2f} | {min(fds.values()):.2f} "
                     f"| {1000 * r['sample_s']:.2f} |")  # fmt: skip
    lines += ["", "FD by checkpoint (pixel / latent):", ""]
    lines += [f"- step {s}: {pix['fd'][s]:.2f} / {lat['fd'][s]:.2f}" for s in sorted(pix["fd"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preset", default="ddpm", help="the diffusion preset of both models")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n", type=int, default=360, help="samples per FD")
    p.add_argument("--root", type=Path, default=Path("runs/bench-latent-digits"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/latent_digits.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.root.mkdir(parents=True, exist_ok=True)
    ae_cfg = load_config(AE_CONFIG)
    ae_dir = args.root / "autoencoder"
    cost = args.root / "autoencoder-cpu.json"  # its CPU seconds, for a reused run
    if not (ae_dir / "checkpoints").is_dir() or not cost.is_file():
        shutil.rmtree(ae_dir, ignore_errors=True)
        start = time.process_time()
        train_run(ae_cfg, ae_dir, progress=False)
        cost.write_text(json.dumps({"cpu_seconds": time.process_time() - start}) + "\n")
    ae_cpu = float(json.loads(cost.read_text())["cpu_seconds"])
    ae = load_run(ae_dir).model
    test = make_data(ae_cfg.data).test
    with torch.no_grad():
        ae_mse = float((ae.decode(ae.encode(test)) - test).square().mean())
    res: dict[str, Any] = {"ae_cpu": ae_cpu, "ae_steps": ae_cfg.train.steps, "ae_mse": ae_mse}
    for name, cfg in configs(args, ae_dir).items():
        run_dir = args.root / name
        at, total = timed_training(cfg, run_dir)
        steps = list(range(args.checkpoint_every, args.steps + 1, args.checkpoint_every))
        res[name] = {"cpu": {s: at[s] for s in steps}, "cpu_total": total,
                     "fd": fd_curve(run_dir, steps, args.n),
                     "sample_s": sampling_seconds(run_dir, args.n)}  # fmt: skip
        print(f"{name}: {total:.0f} CPU s", flush=True)
    text = report(args, res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.root / "latent_digits.json").write_text(json.dumps(res, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
