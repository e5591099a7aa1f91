"""diffusers and k-diffusion samplers on genlab's sampler beds: the reference numbers.

    PYTHONPATH=src .venv/bin/python benchmarks/reference_samplers.py [--beds a/sd,b/edm]
        [--nfe 10,20] [--n 4096] [--cache DIR] [--out rows.json] [--threads 1]

Optional benchmark dependencies, never imported by genlab:
``pip install diffusers==0.42.1`` and ``pip install --no-deps k-diffusion==0.1.1.post1
torchsde trampoline``. Only ``k_diffusion/sampling.py`` is loaded (its package imports
torchvision and scikit-image); its one helper from ``k_diffusion.utils`` is supplied here.

Protocol (benchmarks/protocols.md): each library gets the exact mixture denoiser, wrapped
the way a real model of that setting would be called, on the same start points and against
the same DOP853 reference as `genlab bench samplers`:

- ``sd`` beds: a discrete-time epsilon network. It receives the scheduler's scaled input
  and timestep t and uses the noise level of t (log sigma interpolated linearly between the
  1000 training levels, the inverse of diffusers' sigma -> t map), as Stable Diffusion
  does; diffusers schedulers run on the scaled_linear betas with their own timesteps
  (``linspace`` spacing, i.e. starting at t = 999 = sigma_max; DDIM ``trailing``) and, as
  ``*_karras``, with ``use_karras_sigmas``.
- ``edm`` beds: diffusers' EDM schedulers (EDM preconditioning inverted exactly, so the
  denoised output is the exact denoiser).
- k-diffusion (``kd_*``): its samplers on its Karras rho = 7 grid between the setting's
  sigma_min and sigma_max, then 0. ``kd_dpmpp_3m`` is ``sample_dpmpp_3m_sde`` with eta = 0.

NFE counts true denoiser calls; each sampler gets the most steps that fit the budget.
The rows (bed, sampler, nfe, calls, rmse) go to ``--out`` as JSON; `--best` writes the best
per bed and NFE in the format genlab reads (``src/genlab/assets/sampler_references.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.bench.beds import Bed, beds, problem
from genlab.diffusion.paths import DDPMPath

SD_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear"}  # fmt: skip


def load_kd_sampling() -> types.ModuleType:
    """k_diffusion.sampling without the package's torchvision-dependent imports."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("k-diffusion is not installed (see the module docstring)")
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x: Tensor, target_dims: int) -> Tensor:
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims  # type: ignore[attr-defined]
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.utils = utils  # type: ignore[attr-defined]
    sys.modules.setdefault("k_diffusion", pkg)
    sys.modules.setdefault("k_diffusion.utils", utils)
    path = Path(spec.submodule_search_locations[0]) / "sampling.py"
    mod_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


class Counted:
    """A model wrapper counting its calls."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any) -> Tensor:
        self.calls += 1
        return self.fn(*args)


# ----------------------------------------------------------------------------- k-diffusion


def kd_samplers(kd: types.ModuleType) -> dict[str, tuple[Callable[..., Tensor], int]]:
    """name -> (sampler, calls per step) of the deterministic k-diffusion samplers."""

    def dpmpp_3m(model: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
        return kd.sample_dpmpp_3m_sde(model, x, sigmas, eta=0.0,
                                      noise_sampler=lambda s, t: None, **kw)  # fmt: skip

    def dpmpp_2m_sde(model: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
        return kd.sample_dpmpp_2m_sde(model, x, sigmas, eta=0.0,
                                      noise_sampler=lambda s, t: None, **kw)  # fmt: skip

    return {"kd_euler": (kd.sample_euler, 1), "kd_heun": (kd.sample_heun, 2),
            "kd_dpm_2": (kd.sample_dpm_2, 2), "kd_lms": (kd.sample_lms, 1),
            "kd_dpmpp_2m": (kd.sample_dpmpp_2m, 1), "kd_dpmpp_2m_sde0": (dpmpp_2m_sde, 1),
            "kd_dpmpp_3m": (dpmpp_3m, 1)}  # fmt: skip


def run_kd(kd: types.ModuleType, fn: Callable[..., Tensor], per_step: int, b: Bed,
           x: Tensor, nfe: int) -> tuple[Tensor, int]:  # fmt: skip
    n = (nfe + 1) // 2 if per_step == 2 else nfe
    sigmas = kd.get_sigmas_karras(n, b.sigma_min, b.sigma_max, rho=7.0).to(torch.float64)
    model = Counted(lambda xx, s: b.gmm(xx, s))
    out = fn(model, x.clone(), sigmas, disable=True)
    return out, model.calls


# ----------------------------------------------------------------------------- diffusers


def diffusers_schedulers(setting: str) -> dict[str, Callable[[], Any]]:
    """name -> factory of a deterministic diffusers scheduler for the setting."""
    import diffusers as d

    if setting == "edm":
        return {
            "edm_euler": lambda: d.EDMEulerScheduler(),
            "edm_dpmpp_2m": lambda: d.EDMDPMSolverMultistepScheduler(solver_order=2),
            "edm_dpmpp_3m": lambda: d.EDMDPMSolverMultistepScheduler(solver_order=3),
        }
    table: dict[str, tuple[Any, dict[str, Any]]] = {
        "ddim": (d.DDIMScheduler, {"timestep_spacing": "trailing"}),
        "euler": (d.EulerDiscreteScheduler, {}),
        "heun": (d.HeunDiscreteScheduler, {}),
        "lms": (d.LMSDiscreteScheduler, {}),
        "dpm2": (d.KDPM2DiscreteScheduler, {}),
        "dpmpp_2m": (d.DPMSolverMultistepScheduler, {"solver_order": 2}),
        "dpmpp_3m": (d.DPMSolverMultistepScheduler, {"solver_order": 3}),
        "dpmpp_2s": (d.DPMSolverSinglestepScheduler, {"solver_order": 2}),
        "dpmpp_3s": (d.DPMSolverSinglestepScheduler, {"solver_order": 3}),
        "unipc_2": (d.UniPCMultistepScheduler, {"solver_order": 2}),
        "unipc_3": (d.UniPCMultistepScheduler, {"solver_order": 3}),
        "deis_2": (d.DEISMultistepScheduler, {"solver_order": 2}),
        "deis_3": (d.DEISMultistepScheduler, {"solver_order": 3}),
    }
    out: dict[str, Callable[[], Any]] = {}
    for name, (cls, kw) in table.items():
        out[name] = lambda cls=cls, kw=kw: cls(**SD_BETAS, **kw)
        if name != "ddim":
            out[f"{name}_karras"] = lambda cls=cls, kw=kw: cls(**SD_BETAS, use_karras_sigmas=True,
                                                              **kw)  # fmt: skip
    return out


def sd_model(b: Bed) -> Callable[[Tensor, Tensor], Tensor]:
    """Epsilon network of the sd setting: x_t (VP) and timestep t -> eps_hat."""
    log_sig = DDPMPath(schedule="scaled_linear").noise_levels.to(torch.float64).log().numpy()
    grid = np.arange(len(log_sig), dtype=np.float64)

    def model(x_in: Tensor, t: Tensor) -> Tensor:
        s = float(np.exp(np.interp(float(t), grid, log_sig)))
        x = x_in.to(torch.float64) * math.sqrt(1.0 + s * s)  # canonical x = x_t / alpha
        d = b.gmm(x, s)
        return ((x - d) / s).to(x_in.dtype)

    return model


def edm_model(b: Bed, sched: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """EDM network for diffusers' EDM schedulers: output F with c_skip x + c_out F = D."""
    sd = float(sched.config.sigma_data)

    def model(x_in: Tensor, t: Tensor) -> Tensor:
        s = float(torch.exp(4.0 * torch.as_tensor(t, dtype=torch.float64)))
        x = x_in.to(torch.float64) * math.sqrt(s * s + sd * sd)  # c_in = 1 / sqrt(s^2 + sd^2)
        d = b.gmm(x, s)
        c_skip = sd * sd / (s * s + sd * sd)
        c_out = s * sd / math.sqrt(s * s + sd * sd)
        return ((d - c_skip * x) / c_out).to(x_in.dtype)

    return model


def steps_within(factory: Callable[[], Any], nfe: int) -> int:
    """The most inference steps whose timesteps (one model call each) fit the budget."""
    for n in range(nfe, 0, -1):
        sched = factory()
        sched.set_timesteps(n)
        if len(sched.timesteps) <= nfe:
            return n
    return 0


def run_diffusers(factory: Callable[[], Any], b: Bed, x: Tensor, nfe: int) -> tuple[Tensor, int]:
    n = steps_within(factory, nfe)
    sched = factory()
    sched.set_timesteps(n)
    net = Counted(edm_model(b, sched) if b.setting == "edm" else sd_model(b))
    s0 = float(sched.sigmas[0]) if hasattr(sched, "sigmas") else b.sigma_max
    ve = float(getattr(sched, "init_noise_sigma", 1.0)) > 1.5 or b.setting == "edm"
    sample = x.clone() if ve else x / math.sqrt(1.0 + s0 * s0)  # VE or VP coordinates
    for t in sched.timesteps:
        eps = net(sched.scale_model_input(sample, t), t)
        sample = sched.step(eps, t, sample).prev_sample
    return sample.to(torch.float64), net.calls


# ----------------------------------------------------------------------------- main


def bed_rows(kd: types.ModuleType, b: Bed, x: Tensor, ref: Tensor, nfes: tuple[int, ...]
             ) -> list[dict[str, Any]]:  # fmt: skip
    """One row per reference sampler and NFE on bed ``b`` (start ``x``, exact ``ref``)."""
    cells: list[tuple[str, Callable[[int], tuple[Tensor, int]]]] = []
    for name, (fn, per) in kd_samplers(kd).items():
        cells.append((name, lambda nfe, fn=fn, per=per: run_kd(kd, fn, per, b, x, nfe)))
    for name, factory in diffusers_schedulers(b.setting).items():
        cells.append((name, lambda nfe, f=factory: run_diffusers(f, b, x, nfe)))
    rows = []
    for name, fn in cells:
        for nfe in nfes:
            out, calls = fn(nfe)
            rmse = float((out - ref).pow(2).mean().sqrt())
            rows.append({"bed": b.name, "sampler": name, "nfe": nfe, "calls": calls,
                         "rmse": rmse if math.isfinite(rmse) else None})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beds", default=None, help="comma-separated bed names (default all)")
    parser.add_argument("--nfe", default="10,20")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-samplers"))
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--best",
        type=Path,
        default=None,
        help="write the best sampler per bed and NFE here (genlab's format)",
    )
    parser.add_argument(
        "--rows",
        type=Path,
        nargs="*",
        default=None,
        help="read rows JSON files instead of running (with --best/--table)",
    )
    parser.add_argument("--table", type=Path, default=None, help="write a markdown table here")
    args = parser.parse_args()
    if args.rows:
        rows = [r for f in args.rows for r in json.loads(f.read_text())]
        write_outputs(rows, args.best, args.table)
        return
    torch.set_num_threads(args.threads)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # lower_order_final notices
    kd = load_kd_sampling()
    nfes = tuple(int(v) for v in args.nfe.split(","))
    rows: list[dict[str, Any]] = []
    for b in beds(tuple(args.beds.split(",")) if args.beds else None):
        t0 = time.perf_counter()
        x, ref = problem(b, args.n, cache=args.cache)
        rows += bed_rows(kd, b, x, ref, nfes)
        best = {nfe: min((r for r in rows if r["bed"] == b.name and r["nfe"] == nfe
                          and r["rmse"] is not None), key=lambda r: r["rmse"])
                for nfe in nfes}  # fmt: skip
        print(f"{b.name} ({time.perf_counter() - t0:.0f}s): "
              + ", ".join(f"NFE {k} {v['rmse']:.2e} ({v['sampler']})" for k, v in best.items()),
              flush=True)  # fmt: skip
        if args.out is not None:
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
    write_outputs(rows, args.best, args.table)


def best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """bed -> NFE -> the row of the lowest finite RMSE."""
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["rmse"] is None:
            continue
        cur = best.setdefault(r["bed"], {}).get(str(r["nfe"]))
        if cur is None or r["rmse"] < cur["rmse"]:
            best[r["bed"]][str(r["nfe"])] = r
    return best


def write_outputs(rows: list[dict[str, Any]], best_path: Path | None, table: Path | None) -> None:
    """The best per bed and NFE as genlab's JSON, and a markdown table of every row."""
    best = best_rows(rows)
    if best_path is not None:
        record = {"protocol": "benchmarks/reference_samplers.py (benchmarks/protocols.md)",
                  "libraries": {"diffusers": "0.42.1", "k-diffusion": "0.1.1.post1"},
                  "n": 4096, "seed": 0,
                  "best": {bed: {nfe: {"rmse": r["rmse"], "sampler": r["sampler"],
                                       "calls": r["calls"]} for nfe, r in sorted(by.items())}
                           for bed, by in best.items()}}  # fmt: skip
        best_path.write_text(json.dumps(record, indent=1) + "\n")
    if table is not None:
        nfes = sorted({r["nfe"] for r in rows})
        lines = []
        for bed in dict.fromkeys(r["bed"] for r in rows):
            lines += [f"### {bed}", "", "| sampler | " + " | ".join(f"NFE {n}" for n in nfes)
                      + " |", "|---|" + "---|" * len(nfes)]  # fmt: skip
            cells: dict[str, dict[int, Any]] = {}
            for r in rows:
                if r["bed"] == bed:
                    cells.setdefault(r["sampler"], {})[r["nfe"]] = r["rmse"]
            for name, by in cells.items():
                vals = [("nan" if by.get(n) is None else f"{by[n]:.2e}") for n in nfes]
                lines.append(f"| {name} | " + " | ".join(vals) + " |")
            lines.append("")
        table.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
