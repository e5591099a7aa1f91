"""Sampler benchmark: PF-ODE discretisation error vs NFE on analytic Gaussian mixtures.

Every genlab cell is a public call, so that each number is one a user gets by name:
``genlab.sample(gmm, noise, sampler=..., nfe=..., schedule=..., options=...)`` on a named
grid (karras rho 7, loglinear, uniform_t: DDPM trailing timesteps for ``sd``, uniform sigma
for ``edm``) or on ``genlab.fit_grid(gmm, sampler=..., nfe=..., objective=...)`` fitted on
fresh pilot noise (a stream of its own, never the evaluation noise). The beds, start points
and exact endpoints are those of :mod:`genlab.bench.beds`; the error is the RMSE over
samples and coordinates against the exact endpoint, next to the mean log p0 gap against
20,000 exact samples.

The best diffusers 0.42.1 / k-diffusion 0.1.1 sampler per bed and NFE, measured by
``benchmarks/reference_samplers.py`` on the same beds, start points and references, is read
from ``genlab/assets/sampler_references.json``; the summary puts genlab's best public cell
next to it with the ratio (below 1: genlab is more accurate).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.bench.beds import Bed, beds, problem
from genlab.diffusion.fitted import fit_grid
from genlab.diffusion.grid_search import pilot_noise, pilot_reference
from genlab.diffusion.paths import DDPMPath, EDMPath
from genlab.diffusion.sample import SAMPLERS, sample

NAMED_GRIDS = ("karras", "loglinear", "uniform_t")
X = {"final_step": "extrapolate"}  # the multistep final step by extrapolating D in sigma^2


@dataclass(frozen=True)
class Cell:
    """One public sampler configuration: a `SAMPLERS` name with its options, on a named
    grid or on a grid fitted with ``fit`` (the keywords of `genlab.fit_grid`)."""

    sampler: str
    options: dict[str, Any] = field(default_factory=dict)
    grid: str = "karras"
    fit: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.sampler}({opts})" if opts else self.sampler

    @property
    def grid_name(self) -> str:
        if self.grid != "fitted":
            return self.grid
        return f"fitted({self.fit.get('objective', 'rmse')}, P={self.fit['pilot_size']})"


SAMPLER_SET: tuple[tuple[str, dict[str, Any]], ...] = (
    ("euler", {}), ("heun", {}), ("dpmpp_2m", {}), ("dpmpp_3m", X), ("unipc", {}),
    ("unipc", {"order": 2}), ("unipc", X), ("unipc", {"order": 2, **X}),
    ("unipc", {**X, "limiter": 1.0}), ("dpmpp_3m", {"variant": "dpm-solver"}),
)  # fmt: skip
PLAIN = {"objective": "rmse", "pilot_size": 256}
LARGE = {"objective": "rmse", "pilot_size": 1024}  # more pilot trajectories
TAIL = {"objective": "tail", "pilot_size": 1024}  # and the tail of their errors
FITTED: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
    ("unipc", X, PLAIN), ("unipc", {"order": 2, **X}, PLAIN),
    ("unipc", {**X, "limiter": 1.0}, PLAIN), ("unipc", X, LARGE), ("unipc", X, TAIL),
)  # fmt: skip


UNIFORM_T = (("dpmpp_3m", X), ("unipc", X), ("unipc", {**X, "limiter": 1.0}))


def cells(fit_evals: int = 100) -> list[Cell]:
    """The benchmark's genlab cells: every sampler on karras and loglinear, the
    extrapolating multistep samplers on uniform_t, and fitted grids."""
    out = [Cell(s, o, g) for s, o in SAMPLER_SET for g in NAMED_GRIDS[:2]]
    out += [Cell(s, o, "uniform_t") for s, o in UNIFORM_T]
    out += [Cell(s, o, "fitted", {**f, "max_evals": fit_evals}) for s, o, f in FITTED]
    return out


@dataclass(frozen=True)
class Row:
    bed: str
    sampler: str  # the public call: name(options)
    grid: str
    nfe: int  # the budget (table column)
    calls: int  # true denoiser calls
    rmse: float
    gap: float  # mean log p0(samples) - mean log p0(exact samples), nats
    seconds: float


def _named_grid_kwargs(b: Bed, grid: str) -> dict[str, Any]:
    """Keywords of `genlab.sample` for a named grid on bed ``b``."""
    kw: dict[str, Any] = {"schedule": grid, "sigma_min": b.sigma_min, "sigma_max": b.sigma_max}
    if grid == "uniform_t":
        sd = b.setting == "sd"
        kw.update(path=DDPMPath(schedule="scaled_linear") if sd else EDMPath(),
                  spacing="trailing" if sd else "linspace")  # fmt: skip
    return kw


@functools.lru_cache(maxsize=4)
def _pilot(b: Bed, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """The pilot noise of `genlab.fit_grid` for bed ``b`` (float64) and its exact endpoints,
    computed once for all the fits that share them."""
    pilot = pilot_noise((b.gmm.dim,), size, seed, torch.float64)  # (P, D)
    return pilot, pilot_reference(b.gmm, b.sigma_max * pilot, b.sigma_max, b.sigma_min)


def run_cell(cell: Cell, b: Bed, x: Tensor, nfe: int, seed: int = 0) -> tuple[Tensor, int]:
    """The cell's samples from start points ``x`` (N, D) at sigma_max, and its calls."""
    calls = [0]

    def counted(xx: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        calls[0] += 1
        return b.gmm(xx, sigma, cond)

    if cell.grid == "fitted":
        pilot, pilot_ref = _pilot(b, cell.fit["pilot_size"], seed)
        grid = fit_grid(b.gmm, sampler=cell.sampler, nfe=nfe, options=cell.options,
                        sigma_min=b.sigma_min, sigma_max=b.sigma_max, pilot=pilot,
                        reference=pilot_ref, seed=seed, **cell.fit)  # fmt: skip
        kw: dict[str, Any] = {"schedule": grid}
    else:
        kw = _named_grid_kwargs(b, cell.grid)
    out = sample(counted, x / b.sigma_max, sampler=cell.sampler, nfe=nfe, options=cell.options,
                 **kw)  # fmt: skip
    assert isinstance(out, Tensor)
    return out, calls[0]


def run(
    *,
    quick: bool = False,
    nfes: tuple[int, ...] = (10, 20),
    n_samples: int = 4096,
    bed_names: tuple[str, ...] | None = None,
    cell_list: list[Cell] | None = None,
    fit_evals: int = 100,
    cache: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every cell x NFE on every bed; one Row per cell.

    ``quick``: ring8_D2/edm only, 256 samples, NFE 5 and 10, a few cells, short fits.
    ``cache``: a directory for the beds' reference endpoints (reused across runs)."""
    if quick:
        nfes, n_samples, fit_evals = (5, 10), 256, 20
        bed_names = bed_names or ("ring8_D2/edm",)
        quick_fit = {**PLAIN, "max_evals": fit_evals}
        cell_list = cell_list or [
            Cell("euler"),
            Cell("unipc", X),
            Cell("unipc", X, "fitted", quick_fit),
        ]
    todo = cell_list or cells(fit_evals)
    rows: list[Row] = []
    for b in beds(bed_names):
        t0 = time.perf_counter()
        x, ref = problem(b, n_samples, cache=cache, tol=1e-8 if quick else 1e-10)
        exact = b.gmm.sample(20_000, generator=torch.Generator().manual_seed(1))
        lp_exact = float(b.gmm.log_prob(exact).mean())
        for cell in todo:
            for nfe in nfes:
                if SAMPLERS[cell.sampler].steps_for(nfe) < 1:
                    continue
                t1 = time.perf_counter()
                out, calls = run_cell(cell, b, x, nfe)
                rmse = float((out - ref).pow(2).mean().sqrt())
                gap = float(b.gmm.log_prob(out).mean()) - lp_exact
                rows.append(Row(b.name, cell.name, cell.grid_name, nfe, calls, rmse, gap,
                                time.perf_counter() - t1))  # fmt: skip
        if log:
            log(f"{b.name}: done in {time.perf_counter() - t0:.0f}s")
    return rows


def references() -> dict[str, dict[int, tuple[float, str]]]:
    """Best reference-library RMSE and sampler per bed and NFE (`sampler_references.json`)."""
    text = (resources.files("genlab") / "assets" / "sampler_references.json").read_text()
    best = json.loads(text)["best"]
    return {bed: {int(n): (float(v["rmse"]), str(v["sampler"])) for n, v in by_nfe.items()}
            for bed, by_nfe in best.items()}  # fmt: skip


def _fmt(v: float) -> str:
    return f"{v:.2e}" if math.isfinite(v) else "nan"


def format_table(rows: list[Row]) -> str:
    """Markdown: per bed, RMSE (log p gap) per sampler/grid and NFE, and wall time."""
    out: list[str] = []
    nfes = sorted({r.nfe for r in rows})
    for bed in dict.fromkeys(r.bed for r in rows):
        out += [f"### {bed}: RMSE vs exact PF-ODE endpoint (log-p gap, nats)", "",
                "| sampler | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " | time/batch |",
                "|---|---|" + "---|" * (len(nfes) + 1)]  # fmt: skip
        by_cell: dict[tuple[str, str], dict[int, Row]] = {}
        for r in rows:
            if r.bed == bed:
                by_cell.setdefault((r.sampler, r.grid), {})[r.nfe] = r
        for (name, grid), by_nfe in by_cell.items():
            vals = []
            for n in nfes:
                r = by_nfe.get(n)
                extra = "" if r is None or r.calls == n else f" ({r.calls})"
                vals.append("" if r is None else f"{_fmt(r.rmse)}{extra} ({r.gap:+.3f})")
            secs = max(r.seconds for r in by_nfe.values())
            out.append(f"| {name} | {grid} | " + " | ".join(vals) + f" | {secs:.3f}s |")
        out.append("")
    return "\n".join(out)


def summary(
    rows: list[Row], refs: dict[str, dict[int, tuple[float, str]]] | None = None
) -> list[dict[str, Any]]:
    """genlab's best public cell per bed and NFE next to the best reference sampler."""
    refs = references() if refs is None else refs
    best: dict[tuple[str, int], Row] = {}
    for r in rows:
        key = (r.bed, r.nfe)
        if math.isfinite(r.rmse) and (key not in best or r.rmse < best[key].rmse):
            best[key] = r
    out = []
    for (bed, nfe), r in sorted(best.items()):
        ref_rmse, ref_name = refs.get(bed, {}).get(nfe, (math.nan, ""))
        out.append({"bed": bed, "nfe": nfe, "sampler": r.sampler, "grid": r.grid,
                    "rmse": r.rmse, "gap": r.gap, "ref_rmse": ref_rmse, "ref_sampler": ref_name,
                    "ratio": r.rmse / ref_rmse if ref_rmse > 0 else math.nan})  # fmt: skip
    return out


def format_summary(rows: list[Row], refs: dict[str, dict[int, tuple[float, str]]] | None = None
                   ) -> str:  # fmt: skip
    """Markdown summary: genlab's best vs the best reference per bed and NFE, with the ratio."""
    lines = ["| bed / setting | NFE | genlab best: sampler | grid | RMSE | log-p gap "
             "| best reference | reference RMSE | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in summary(rows, refs):
        lines.append(f"| {s['bed']} | {s['nfe']} | {s['sampler']} | {s['grid']} | "
                     f"{_fmt(s['rmse'])} | {s['gap']:+.3f} | {s['ref_sampler'] or '-'} | "
                     f"{_fmt(s['ref_rmse'])} | {s['ratio']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(quick: bool = False, console: Any = None, **kwargs: Any) -> list[Row]:
    """Run the benchmark and print the full tables and the summary."""

    def say(text: str) -> None:
        if console is not None:
            console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    rows = run(quick=quick, log=say, **kwargs)
    say(format_table(rows))
    say("### Summary: genlab's best public call vs the best diffusers / k-diffusion sampler "
        "(same beds and draws; ratio < 1: genlab more accurate)\n")  # fmt: skip
    say(format_summary(rows))
    return rows
