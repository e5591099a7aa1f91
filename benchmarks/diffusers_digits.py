"""diffusers' schedulers vs genlab's samplers on one diffusers UNet2DModel of the 8x8 digits.

A class-conditional diffusers ``UNet2DModel`` is trained on the digits (genlab's fixed
split, pixels in [-1, 1]) by diffusers' own DDPM recipe (``DDPMScheduler``: 1000 linear
betas, eps-prediction, uniform integer timesteps, MSE on the noise, AdamW with cosine
warm-up, EMA with warm-up). The same model and the same initial noise and labels are then
sampled at NFE 10 and 20 by

- diffusers' schedulers in their own loop: DDIM, DPMSolverMultistep (DPM-Solver++ 2M),
  UniPCMultistep and EulerDiscrete, each at the timestep spacings leading / linspace /
  trailing and with Karras sigmas where the scheduler has them;
- genlab's samplers through `genlab.adapters.diffusers.DiffusersDenoiser`, on Karras,
  log-linear and DDIM-trailing grids and on grids fitted to the model
  (`genlab.fit_grid`, on a separate pilot batch).

Each row reports FD and class accuracy (the shipped digits network, `genlab.runs.
evaluate_images`) against the test split, next to the floor (as many real train images),
and the seconds it took. The model is saved with ``save_pretrained`` (safetensors) in
``--model-dir`` and reused by later calls. Target: genlab's best FD at NFE 10 is at most
0.8x diffusers' best at NFE 10.

    PYTHONPATH=src .venv/bin/python benchmarks/diffusers_digits.py [--quick] [--threads 1]
        [--model-dir runs/bench-diffusers-digits] [--steps 8000] [--n 500]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is trained here; nothing is fetched

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)
from diffusers_digits_train import train_unet  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import Tensor  # noqa: E402

import genlab  # noqa: E402
from genlab.adapters.diffusers import DiffusersDenoiser  # noqa: E402
from genlab.config import DataConfig  # noqa: E402
from genlab.runs import Data, evaluate_images, make_data, test_labels  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "diffusers_digits.md"
SPACINGS = ("leading", "linspace", "trailing")
DIFFUSERS = {"DDIM": DDIMScheduler, "DPM++2M": DPMSolverMultistepScheduler,
             "UniPC": UniPCMultistepScheduler, "Euler": EulerDiscreteScheduler}  # fmt: skip
KARRAS = ("DPM++2M", "UniPC", "Euler")  # the ones with use_karras_sigmas
# genlab rows: (sampler, grid, sampler options)
UNIPC2 = {"order": 2}
GENLAB: list[tuple[str, str, dict[str, Any]]] = [
    ("ddim", "uniform_t", {}),
    ("dpmpp_2m", "karras", {}),
    ("dpmpp_2m", "loglinear", {}),
    ("unipc", "karras", UNIPC2),
    ("unipc", "loglinear", UNIPC2),
    ("unipc", "loglinear", {"order": 2, "final_step": "extrapolate"}),
    ("dpmpp_3m", "loglinear", {}),
    ("unipc", "loglinear", {}),
    ("dpmpp_3m", "fitted", {}),
    ("unipc", "fitted", UNIPC2),
    ("unipc", "fitted", {}),
]
QUICK_GENLAB = [GENLAB[4], GENLAB[9]]
REFERENCE_NFE = 200  # UniPC-3 on a log-linear grid: the PF-ODE endpoint the rows are held to


@torch.no_grad()
def diffusers_sample(unet: UNet2DModel, scheduler: Any, nfe: int, noise: Tensor,
                     labels: Tensor) -> Tensor:  # fmt: skip
    """diffusers' own loop (as its pipelines run it): nfe steps from ``noise``."""
    scheduler.set_timesteps(nfe)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t, class_labels=labels).sample
        x = scheduler.step(out, t, x).prev_sample
    return x


def diffusers_rows(train_config: Any, quick: bool) -> list[tuple[str, str, Any]]:
    """(scheduler, variant, scheduler) for every spacing and Karras option."""
    rows = []
    for name, cls in DIFFUSERS.items():
        for spacing in SPACINGS[2:] if quick else SPACINGS:
            rows.append((name, spacing, cls.from_config(train_config, timestep_spacing=spacing)))
        if name in KARRAS and not quick:
            rows.append((name, "karras", cls.from_config(train_config, use_karras_sigmas=True)))
    return rows


class FittedGrids:
    """Grids fitted to the model (one `fit_grid` call site; the pilot reference is shared).

    The reference is the PF-ODE solved down to the model's lowest level s_0 (UniPC-3 on 400
    log-linear steps, float64), then x = D(x, s_0), as every sampler here ends. (fit_grid's
    default, RK45 in sigma to s_0 / 100, leaves the UNet's trained range below s_0, and
    torchdiffeq's dopri5 evaluates past its end point, at negative sigma.)"""

    def __init__(self, unet: UNet2DModel, scheduler: Any, pilot_n: int, evals: int) -> None:
        self.denoiser = DiffusersDenoiser(unet, scheduler)
        gen = torch.Generator().manual_seed(1234)  # never the evaluation noise
        z = torch.randn((pilot_n, 1, 8, 8), generator=gen)  # (P, 1, 8, 8)
        self.pilot = z  # unit noise: fit_grid starts it at sigma_max
        self.labels = torch.arange(pilot_n) % 10
        self.evals = evals
        exact = DiffusersDenoiser(copy.deepcopy(unet).double(), scheduler)
        with torch.no_grad():
            self.reference = genlab.sample(
                exact, z.double(), sampler="unipc", nfe=400, schedule="loglinear", cond=self.labels
            ).float()

    def __call__(self, sampler: str, nfe: int, options: dict[str, Any]) -> Tensor:
        return genlab.fit_grid(self.denoiser, sampler=sampler, nfe=nfe, pilot=self.pilot,
                               reference=self.reference, options=options, cond=self.labels,
                               max_evals=self.evals)  # fmt: skip


def genlab_sample(denoiser: DiffusersDenoiser, spec: tuple[str, str, dict[str, Any]], nfe: int,
                  noise: Tensor, labels: Tensor, fitted: FittedGrids | None) -> Tensor:  # fmt: skip
    sampler, grid, options = spec
    schedule: str | Tensor = grid
    if grid == "fitted":
        assert fitted is not None
        schedule = fitted(sampler, nfe, options)
    with torch.no_grad():
        return genlab.sample(denoiser, noise, sampler=sampler, nfe=nfe, schedule=schedule,
                             path=denoiser.path, spacing="trailing", options=options,
                             cond=labels)  # fmt: skip


def reference(denoiser: DiffusersDenoiser, noise: Tensor, labels: Tensor, cache: Path) -> Tensor:
    """The PF-ODE endpoint of every sample, from the same noise (cached as safetensors)."""
    if cache.exists():
        return load_file(cache)["x"]
    with torch.no_grad():
        x = genlab.sample(denoiser, noise, sampler="unipc", nfe=REFERENCE_NFE,
                          schedule="loglinear", cond=labels)  # fmt: skip
    save_file({"x": x.contiguous()}, cache)
    return x


def measure(draw: Callable[[], Tensor], data: Data, labels: Tensor,
            ref: Tensor) -> dict[str, float]:  # fmt: skip
    """Metrics of the samples ``draw`` makes, their RMSE to the PF-ODE endpoint, seconds."""
    start = time.perf_counter()
    x = draw()
    seconds = time.perf_counter() - start
    rmse = float((x - ref).pow(2).mean().sqrt())
    return {**evaluate_images(x, data, labels=labels, seed=0), "rmse": rmse, "seconds": seconds}


def describe(spec: tuple[str, str, dict[str, Any]]) -> tuple[str, str]:
    sampler, grid, options = spec
    extra = ", ".join(f"{k}={v}" for k, v in options.items())
    grid = "uniform_t trailing" if grid == "uniform_t" else grid
    return sampler + (f" ({extra})" if extra else ""), grid


def run_rows(args: argparse.Namespace, unet: UNet2DModel, train_config: Any,
             data: Data) -> list[dict[str, Any]]:  # fmt: skip
    """Every sampler at every NFE, on the same noise and labels, after the reference."""
    labels = test_labels(data, args.n)
    noise = torch.randn((args.n, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    denoiser = DiffusersDenoiser(unet, train_config)
    cache = args.model_dir / f"reference-n{args.n}-nfe{REFERENCE_NFE}.safetensors"
    ref = reference(denoiser, noise, labels, cache)
    ref_row = measure(lambda: ref, data, labels, ref)
    rows = [{"library": "genlab", "sampler": "unipc (reference)", "grid": "loglinear",
             "nfe": REFERENCE_NFE, **ref_row}]  # fmt: skip
    specs = QUICK_GENLAB if args.quick else GENLAB
    needs_fit = any(g == "fitted" for _, g, _ in specs)
    fitted = FittedGrids(unet, train_config, args.pilot, args.fit_evals) if needs_fit else None
    for nfe in args.nfe:
        for name, variant, sch in diffusers_rows(train_config, args.quick):
            m = measure(lambda s=sch, k=nfe: diffusers_sample(unet, s, k, noise, labels),
                        data, labels, ref)  # fmt: skip
            rows.append({"library": "diffusers", "sampler": name, "grid": variant, "nfe": nfe, **m})
            print(f"  diffusers {name} {variant} @{nfe}: FD {m['fd']:.3g}", flush=True)
        for spec in specs:
            m = measure(lambda s=spec, k=nfe: genlab_sample(denoiser, s, k, noise, labels, fitted),
                        data, labels, ref)  # fmt: skip
            sampler, grid = describe(spec)
            rows.append({"library": "genlab", "sampler": sampler, "grid": grid, "nfe": nfe, **m})
            print(f"  genlab {sampler} {grid} @{nfe}: FD {m['fd']:.3g}", flush=True)
    return rows


def best(rows: list[dict[str, Any]], library: str, nfe: int, key: str) -> dict[str, Any]:
    return min((r for r in rows if r["library"] == library and r["nfe"] == nfe),
               key=lambda r: r[key])  # fmt: skip


HEAD = ("| library | sampler | grid / spacing | NFE | FD | FD floor | accuracy | acc. floor "
        "| RMSE to ODE | s |")  # fmt: skip


def summary(rows: list[dict[str, Any]], nfes: list[int]) -> list[str]:
    """Per NFE: each library's best FD and best RMSE to the PF-ODE endpoint."""
    ode, floor = rows[0]["fd"], rows[0]["fd_floor"]
    lines = [f"- The PF-ODE endpoint itself (UniPC-3, {REFERENCE_NFE} NFE): FD {ode:.4g} "
             f"(floor {floor:.4g}). A sampler's FD sits near the endpoint's whatever its "
             "error, so raw FD ratios say little once the model is good: the sampler's own "
             "share is the FD above the endpoint's, and its error the RMSE to it."]  # fmt: skip
    for nfe in nfes:
        for key, what in (("fd", "FD"), ("rmse", "RMSE to ODE")):
            d, g = best(rows, "diffusers", nfe, key), best(rows, "genlab", nfe, key)
            lines.append(f"- NFE {nfe}, best {what}: diffusers {d['sampler']} {d['grid']} "
                         f"{d[key]:.4g}; genlab {g['sampler']} {g['grid']} {g[key]:.4g}; "
                         f"genlab / diffusers = {g[key] / d[key]:.3f}")  # fmt: skip
        d, g = best(rows, "diffusers", nfe, "fd")["fd"], best(rows, "genlab", nfe, "fd")["fd"]
        lines.append(f"- NFE {nfe}, FD above the endpoint's: diffusers {d - ode:+.3f}, genlab "
                     f"{g - ode:+.3f}; above the floor: diffusers {d - floor:.3f}, genlab "
                     f"{g - floor:.3f} (genlab / diffusers = {(g - floor) / (d - floor):.3f}); "
                     f"for scale, the exact endpoint's FD is {ode / d:.3f} of diffusers' "
                     f"best and the floor {floor / d:.3f} of it")  # fmt: skip
    return lines


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, trained: str) -> str:
    """The table, the model and protocol, and the summary per NFE."""
    lines = ["# diffusers' schedulers vs genlab's samplers on one diffusers UNet (digits)\n",
             f"`{' '.join(args.command)}`\n", trained, "", HEAD, "|" + "---|" * 10]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['library']} | {r['sampler']} | {r['grid']} | {r['nfe']} | "
                     f"{r['fd']:.4g} | {r['fd_floor']:.4g} | {r['accuracy']:.3f} | "
                     f"{r['accuracy_floor']:.3f} | {r['rmse']:.4f} | "
                     f"{r['seconds']:.1f} |")  # fmt: skip
    lines += ["", *summary(rows, args.nfe)]
    lines.append("\nRMSE: per pixel, to the PF-ODE endpoint from the same noise. Seconds are "
                 "wall-clock under whatever load the machine had (fitted rows include the "
                 "grid fit).")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few rows: a smoke test")
    p.add_argument("--model-dir", type=Path, default=Path("runs/bench-diffusers-digits"))
    p.add_argument("--steps", type=int, default=8000, help="training steps (a new model only)")
    p.add_argument("--n", type=int, default=500, help="samples per row")
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20])
    p.add_argument("--pilot", type=int, default=64, help="pilot batch of the fitted grids")
    p.add_argument("--fit-evals", type=int, default=120, help="Powell evaluations per fit")
    p.add_argument("--out", type=Path, default=RESULTS, help="markdown table ('' to skip)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    args.command = ["python", "benchmarks/diffusers_digits.py", *sys.argv[1:]]
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.n, args.nfe, args.fit_evals = min(args.steps, 30), 60, [10], 20
    data = make_data(DataConfig(name="digits", labels=True))
    unet, train_config, trained = train_unet(args.model_dir, data, args.steps, args.quick)
    rows = run_rows(args, unet, train_config, data)
    table = markdown(rows, args, trained)
    print("\n" + table)
    if str(args.out) and not args.quick:
        args.out.write_text(table)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
