"""Training throughput and peak memory of the image backbones on digits-shaped input.

One denoising training step (DDPM eps-prediction MSE, Ho et al. 2020, eq. 14, linear betas,
1000 steps; AdamW) on batches of scikit-learn's 8x8 digits (1 x 8 x 8, labels as classes),
for the genlab UNet, the genlab DiT and - when installed - diffusers' ``UNet2DModel`` built to
the same width and depth (same channels, levels, res blocks, attention placement, head width,
AdaGN scale-shift, class table), in fp32 and under bf16 autocast, with and without gradient
checkpointing.

Every configuration runs in a fresh subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. "step MB" is the peak RSS over
the training steps minus the RSS before the first step (the memory a training step needs:
activations, gradients, optimizer state); "peak MB" is the process total. "img/s" is wall
clock; "img/cpu-s" divides by the process CPU time (all threads), which is the steadier
number on a machine shared with other jobs; both use the fastest timed step. One intra-op
thread by default: with more, threads that wait on a pre-empted sibling spin and inflate CPU
time.

    PYTHONPATH=src .venv/bin/python benchmarks/train_throughput.py --steps 5 --warmup 2
    PYTHONPATH=src .venv/bin/python benchmarks/train_throughput.py --ab --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

ARCHS = ("unet", "diffusers-unet", "dit")


@dataclass(frozen=True)
class Case:
    arch: str
    bf16: bool
    checkpoint: bool
    batch: int
    steps: int
    warmup: int
    threads: int
    channels: int


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    return x, torch.tensor(bunch.target, dtype=torch.long)


def _build(arch: str, checkpoint: bool, ch: int = 64) -> nn.Module:
    """The same UNet width/depth in genlab and diffusers: `ch` channels, mult (1, 2, 2), 2 res
    blocks per level, attention at level 1 and in the middle, 32-wide heads, 10 classes + null.
    The DiT has width 4 ch, depth 6, 4 heads, patch 2 (16 tokens)."""
    if arch == "unet":
        from genlab.nets.unet import UNet, UNetConfig

        cfg = UNetConfig(
            in_channels=1, channels=ch, channel_mult=(1, 2, 2), num_res_blocks=2,
            attention_levels=(1,), head_dim=32, num_classes=10, use_checkpoint=checkpoint,
        )  # fmt: skip
        return UNet(cfg)
    if arch == "dit":
        from genlab.nets.dit import DiT, DiTConfig

        cfg_d = DiTConfig(
            in_channels=1, patch_size=2, hidden=4 * ch, depth=6, num_heads=4, num_classes=10,
            use_checkpoint=checkpoint,
        )  # fmt: skip
        return DiT(cfg_d)
    from diffusers import UNet2DModel

    model = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(ch, 2 * ch, 2 * ch),
        layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=32,
        resnet_time_scale_shift="scale_shift", num_class_embeds=11,
    )  # fmt: skip
    if checkpoint:
        model.enable_gradient_checkpointing()
    return _DiffusersAdapter(model)


class _DiffusersAdapter(nn.Module):
    """diffusers' UNet2DModel behind genlab's net(x, t, cond) interface."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.model(x, t, class_labels=cond).sample


def make_step(case: Case) -> tuple[nn.Module, Callable[[], None]]:
    """Build the net of `case` and a closure running one training step on it."""
    data, labels = _digits()
    net = _build(case.arch, case.checkpoint, case.channels).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)  # Ho et al. 2020, sec. 4
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, data.shape[0], (case.batch,), generator=gen)
        x0, y = data[idx], labels[idx]  # (B, 1, 8, 8), (B,)
        k = torch.randint(0, 1000, (case.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[k][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # (B, 1, 8, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.bf16):
            pred = net(xt, k.float(), y)
        loss = ((pred.float() - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return net, step


def run_case(case: Case) -> dict[str, float]:
    """Train `case.warmup + case.steps` steps; time the last `case.steps`."""
    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    net, step = make_step(case)
    base = _rss_mb()
    for _ in range(case.warmup):
        step()
    walls, cpus = [], []
    for _ in range(case.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    params = sum(p.numel() for p in net.parameters())
    return {
        "images_per_s": case.batch / min(walls),  # best step: least disturbed by other jobs
        "images_per_cpu_s": case.batch / min(cpus),
        "step_mb": _rss_mb() - base,
        "peak_mb": _rss_mb(),
        "params_m": params / 1e6,
    }


def interleaved(cases: list[Case], rounds: int) -> list[float]:
    """Throughput (images per CPU-second, best step) of several configurations trained in one
    process, one step of each in turn, so they share the same disturbance from other jobs."""
    torch.set_num_threads(cases[0].threads)
    steps = [make_step(case)[1] for case in cases]
    best = [float("inf")] * len(cases)
    for r in range(rounds + 1):
        for i, step in enumerate(steps):
            cpu_start = time.process_time()
            step()
            if r:  # round 0 is warm-up
                best[i] = min(best[i], time.process_time() - cpu_start)
    return [case.batch / b for case, b in zip(cases, best, strict=True)]


def _child(spec: str) -> None:
    print(json.dumps(run_case(Case(**json.loads(spec)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--ab", action="store_true", help="interleaved genlab vs diffusers UNet")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    if args.ab:
        for bf16 in (False, True):
            cases = [
                Case(a, bf16, False, args.batch, 0, 0, args.threads, args.channels)
                for a in ("unet", "diffusers-unet")
            ]
            speeds = interleaved(cases, args.steps)
            prec = "bf16" if bf16 else "fp32"
            print(
                f"{prec} interleaved img/cpu-s: genlab unet {speeds[0]:.1f}, "
                f"diffusers UNet2DModel {speeds[1]:.1f}",
                flush=True,
            )
        return
    header = f"{'arch':<15}{'prec':<6}{'ckpt':<6}{'params M':>9}{'img/s':>9}{'img/cpu-s':>10}"
    print(header + f"{'step MB':>9}{'peak MB':>9}", flush=True)
    for arch in args.archs.split(","):
        for bf16 in (False, True):
            for ckpt in (False, True):
                case = Case(
                    arch, bf16, ckpt, args.batch, args.steps, args.warmup, args.threads,
                    args.channels,
                )  # fmt: skip
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(asdict(case))],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{arch:<15}{'bf16' if bf16 else 'fp32':<6}{'yes' if ckpt else 'no':<6}"
                          f"  failed: {last}", flush=True)  # fmt: skip
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"{arch:<15}{'bf16' if bf16 else 'fp32':<6}{'yes' if ckpt else 'no':<6}"
                    f"{r['params_m']:>9.2f}{r['images_per_s']:>9.1f}{r['images_per_cpu_s']:>10.1f}"
                    f"{r['step_mb']:>9.0f}"
                    f"{r['peak_mb']:>9.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
