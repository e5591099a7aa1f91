"""Sampler benchmark: PF-ODE discretisation error vs NFE on analytic Gaussian mixtures.

The beds and protocol are those of the reference measurements in `benchmarks/protocols.md`,
so genlab's numbers sit next to the best public samplers (diffusers, k-diffusion) on the
same problems:

- beds ``ring8_D2`` (8 Gaussians on a circle of radius 4, std 0.3) and ``gmm16_D64``
  (``GaussianMixture.random()``); settings ``sd`` (Stable Diffusion's scaled_linear DDPM
  noise levels, sigma in [0.0291675, 14.6146]) and ``edm`` (sigma in [0.002, 80]), then 0;
- start x = x0 + sigma_max * eps with x0 exact mixture samples (N = 4096);
- reference: scipy DOP853 at rtol = atol = 1e-10 (float64) of dx/dsigma = -sigma score(x)
  (the same ODE as (x - D)/sigma, without the 0/0 at sigma = 0) down to sigma = 0;
- RMSE over samples and coordinates against the reference; mean log p0 gap against 20,000
  exact samples; wall time per batch.

Grids: karras (rho 7), loglinear, uniform_t (DDPM trailing timesteps for ``sd``, uniform
sigma for ``edm``) and ``fitted``: :func:`genlab.diffusion.grid_search.fit_grid` on a pilot
batch of 256 fresh noise vectors (a different seed from the evaluation noise).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from genlab.data.gmm import GaussianMixture
from genlab.diffusion import schedules
from genlab.diffusion.grid_search import fit_grid, pilot_reference
from genlab.diffusion.multistep import dpmpp_2m, dpmpp_3m, unipc
from genlab.diffusion.paths import DDPMPath, EDMPath
from genlab.diffusion.samplers import euler, heun

# Best reference RMSE per NFE (sampler): diffusers 0.42.1 / k-diffusion 0.1.1 on the same
# beds, measured once (benchmarks/protocols.md).
ANCHOR_BEST: dict[str, dict[int, tuple[float, str]]] = {
    "gmm16_D64/edm": {5: (4.19e-01, "kd_lms"), 10: (1.83e-01, "kd_lms"),
                      20: (4.80e-02, "kd_dpmpp_3m"), 50: (3.07e-03, "kd_dpmpp_3m")},
    "gmm16_D64/sd": {5: (2.28e-01, "unipc_3"), 10: (7.21e-02, "kd_dpmpp_3m"),
                     20: (4.57e-03, "unipc_3_karras"), 50: (5.65e-04, "lms")},
    "ring8_D2/edm": {5: (6.78e-01, "kd_lms"), 10: (1.12e-01, "kd_lms"),
                     20: (3.01e-02, "kd_lms"), 50: (4.50e-03, "kd_dpmpp_3m")},
    "ring8_D2/sd": {5: (1.58e-01, "dpmpp_3s"), 10: (3.01e-02, "unipc_2_karras"),
                    20: (8.41e-03, "unipc_3_karras"), 50: (1.31e-03, "kd_lms")},
}  # fmt: skip

SamplerFn = Callable[..., Tensor]


def _unipc2(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return unipc(denoiser, x, sigmas, order=2, **kw)


def _unipc_bh1(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return unipc(denoiser, x, sigmas, variant="bh1", **kw)


def _unipc2x(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return unipc(denoiser, x, sigmas, order=2, final_step="extrapolate", **kw)


def _unipc3x(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return unipc(denoiser, x, sigmas, final_step="extrapolate", **kw)


def _unipc3xl(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return unipc(denoiser, x, sigmas, final_step="extrapolate", limiter=1.0, **kw)


def _dpmpp_3m_x(denoiser: Any, x: Tensor, sigmas: Tensor, **kw: Any) -> Tensor:
    return dpmpp_3m(denoiser, x, sigmas, final_step="extrapolate", **kw)


# name -> (sampler, calls per step): heun-type samplers use n = (nfe + 1) // 2 steps.
DETERMINISTIC: dict[str, tuple[SamplerFn, int]] = {
    "euler": (euler, 1),  # = ddim (eta 0)
    "heun": (heun, 2),
    "dpmpp_2m": (dpmpp_2m, 1),
    "dpmpp_3m": (dpmpp_3m, 1),
    "unipc_2": (_unipc2, 1),
    "unipc_3": (unipc, 1),
    "unipc_3_bh1": (_unipc_bh1, 1),
    # "_x": final step by extrapolating D linearly in sigma^2 (multistep.py), no extra call
    "dpmpp_3m_x": (_dpmpp_3m_x, 1),
    "unipc_2_x": (_unipc2x, 1),
    "unipc_3_x": (_unipc3x, 1),
    # "_xl": and the per-sample order limiter of multistep.unipc (limiter=1)
    "unipc_3_xl": (_unipc3xl, 1),
}
FITTED = ("unipc_2", "unipc_3", "unipc_2_x", "unipc_3_x", "unipc_3_xl")


@dataclass(frozen=True)
class Bed:
    """One test bed: a mixture and a noise-level range."""

    name: str
    gmm: GaussianMixture
    sigma_min: float
    sigma_max: float

    def uniform_t(self, n: int) -> Tensor:
        setting = self.name.split("/")[1]
        if setting == "sd":
            return schedules.uniform_t(DDPMPath(schedule="scaled_linear"), n, spacing="trailing")
        return schedules.uniform_t(EDMPath(), n, sigma_min=self.sigma_min,
                                   sigma_max=self.sigma_max)


def beds(names: tuple[str, ...] | None = None) -> list[Bed]:
    """The anchors' four bed/settings (or the named subset)."""
    sd = DDPMPath(schedule="scaled_linear").noise_levels
    settings = {"sd": (float(sd[0]), float(sd[-1])), "edm": (0.002, 80.0)}
    mixtures = {"ring8_D2": GaussianMixture.ring(), "gmm16_D64": GaussianMixture.random()}
    out = [
        Bed(f"{m}/{s}", g, lo, hi) for m, g in mixtures.items() for s, (lo, hi) in settings.items()
    ]
    return [b for b in out if names is None or b.name in names]


def reference_solution(gmm: GaussianMixture, x: Tensor, sigma_max: float, tol: float = 1e-10
                       ) -> Tensor:
    """PF-ODE endpoint at sigma = 0 by scipy DOP853 (float64), dx/dsigma = -sigma score."""
    shape = x.shape

    def rhs(s: float, y: Any) -> Any:
        yt = torch.from_numpy(y).reshape(shape)
        return (-s * gmm.score(yt, s)).reshape(-1).numpy()

    sol = solve_ivp(rhs, (sigma_max, 0.0), x.reshape(-1).numpy(), method="DOP853",
                    rtol=tol, atol=tol)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape)


@dataclass(frozen=True)
class Row:
    bed: str
    sampler: str
    grid: str
    nfe: int  # the budget (table column)
    calls: int  # true denoiser calls
    rmse: float
    gap: float  # mean log p0(samples) - mean log p0(exact samples), nats
    seconds: float


def _grid(bed: Bed, grid: str, n: int) -> Tensor:
    if grid == "karras":
        return schedules.karras(n, bed.sigma_min, bed.sigma_max)
    if grid == "loglinear":
        return schedules.loglinear(n, bed.sigma_min, bed.sigma_max)
    return bed.uniform_t(n)


def run(
    *,
    quick: bool = False,
    nfes: tuple[int, ...] = (5, 10, 20, 50),
    n_samples: int = 4096,
    bed_names: tuple[str, ...] | None = None,
    samplers: tuple[str, ...] | None = None,
    grids: tuple[str, ...] = ("karras", "loglinear", "uniform_t"),
    fitted: tuple[str, ...] = FITTED,
    fit_evals: int = 100,
    pilot_size: int = 256,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every deterministic sampler x grid x NFE on every bed; returns one Row per cell.

    ``quick``: ring8_D2/edm only, 512 samples, NFE 5 and 10, fewer fit evaluations.
    """
    if quick:
        nfes, n_samples, fit_evals, pilot_size = (5, 10), 256, 20, 64
        bed_names = bed_names or ("ring8_D2/edm",)
        samplers = samplers or ("euler", "dpmpp_2m", "unipc_3")
        fitted = ("unipc_3",)
    names = samplers or tuple(DETERMINISTIC)
    rows: list[Row] = []
    for bed in beds(bed_names):
        g = bed.gmm
        gen = torch.Generator().manual_seed(seed)
        x0 = g.sample(n_samples, generator=gen)
        x_start = x0 + bed.sigma_max * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        exact = g.sample(20_000, generator=torch.Generator().manual_seed(seed + 1))
        lp_exact = float(g.log_prob(exact).mean())
        t0 = time.perf_counter()
        ref = reference_solution(g, x_start, bed.sigma_max, tol=1e-8 if quick else 1e-10)
        if log:
            log(f"{bed.name}: reference in {time.perf_counter() - t0:.1f}s")
        pilot_gen = torch.Generator().manual_seed(seed + 12345)  # never the evaluation noise
        pilot = bed.sigma_max * torch.randn(pilot_size, g.dim, generator=pilot_gen,
                                            dtype=torch.float64)
        pilot_ref = pilot_reference(g, pilot, bed.sigma_max, bed.sigma_min)
        for name in names:
            fn, per_step = DETERMINISTIC[name]
            for nfe in nfes:
                n = (nfe + 1) // 2 if per_step == 2 else nfe
                cells = [(gr, _grid(bed, gr, n)) for gr in grids]
                if name in fitted:
                    cells.append(("fitted", fit_grid(g, fn, n, bed.sigma_min, bed.sigma_max,
                                                     pilot, reference=pilot_ref,
                                                     max_evals=fit_evals)))
                for grid_name, sig in cells:
                    t0 = time.perf_counter()
                    out = fn(g, x_start, sig)
                    secs = time.perf_counter() - t0
                    rmse = float((out - ref).pow(2).mean().sqrt())
                    gap = float(g.log_prob(out).mean()) - lp_exact
                    calls = 2 * n - 1 if per_step == 2 else n
                    rows.append(Row(bed.name, name, grid_name, nfe, calls, rmse, gap, secs))
            if log:
                log(f"{bed.name}: {name} done")
    return rows


def _fmt(v: float) -> str:
    return f"{v:.2e}" if math.isfinite(v) else "nan"


def format_table(rows: list[Row]) -> str:
    """Markdown: per bed, RMSE (log p gap) per sampler/grid and NFE, and wall time."""
    out: list[str] = []
    nfes = sorted({r.nfe for r in rows})
    for bed in dict.fromkeys(r.bed for r in rows):
        out += [f"### {bed}: RMSE vs exact PF-ODE endpoint (log-p gap, nats)", "",
                "| sampler | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " | time/batch |",
                "|---|---|" + "---|" * (len(nfes) + 1)]
        cells: dict[tuple[str, str], dict[int, Row]] = {}
        for r in rows:
            if r.bed == bed:
                cells.setdefault((r.sampler, r.grid), {})[r.nfe] = r
        for (sampler, grid), by_nfe in cells.items():
            vals = []
            for n in nfes:
                r = by_nfe.get(n)
                if r is None:
                    vals.append("")
                    continue
                extra = f" ({r.calls})" if r.calls != n else ""
                vals.append(f"{_fmt(r.rmse)}{extra} ({r.gap:+.3f})")
            secs = max(r.seconds for r in by_nfe.values())
            out.append(f"| {sampler} | {grid} | " + " | ".join(vals) + f" | {secs:.3f}s |")
        out.append("")
    return "\n".join(out)


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    """genlab's best sampler+grid per bed and NFE next to the best anchor."""
    best: dict[tuple[str, int], Row] = {}
    for r in rows:
        key = (r.bed, r.nfe)
        if math.isfinite(r.rmse) and (key not in best or r.rmse < best[key].rmse):
            best[key] = r
    out = []
    for (bed, nfe), r in sorted(best.items()):
        anchor = ANCHOR_BEST.get(bed, {}).get(nfe)
        out.append({"bed": bed, "nfe": nfe, "sampler": r.sampler, "grid": r.grid,
                    "rmse": r.rmse, "gap": r.gap,
                    "anchor_rmse": anchor[0] if anchor else math.nan,
                    "anchor_sampler": anchor[1] if anchor else "",
                    "ratio": r.rmse / anchor[0] if anchor else math.nan})
    return out


def format_summary(rows: list[Row]) -> str:
    """Markdown summary: best genlab cell vs best anchor per bed and NFE, with the ratio."""
    lines = ["| bed / setting | NFE | genlab best (sampler, grid) | RMSE | log-p gap "
             "| best anchor | anchor RMSE | ratio |", "|---|---|---|---|---|---|---|---|"]
    for s in summary(rows):
        lines.append(f"| {s['bed']} | {s['nfe']} | {s['sampler']}, {s['grid']} | "
                     f"{_fmt(s['rmse'])} | {s['gap']:+.3f} | {s['anchor_sampler']} | "
                     f"{_fmt(s['anchor_rmse'])} | {s['ratio']:.2f} |")
    return "\n".join(lines)


def main(quick: bool = False, console: Any = None) -> list[Row]:
    """Run the benchmark and print the full tables and the summary."""

    def say(text: str) -> None:
        if console is not None:
            console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    rows = run(quick=quick, log=say)
    say(format_table(rows))
    say("### Summary: genlab best vs best public anchor (RMSE; ratio < 1 is better)\n")
    say(format_summary(rows))
    return rows
