"""`genlab demo`: flow matching, EDM and DDPM on two toy sets, many samplers, a small
class-conditional UNet on 8x8 digits (samplers, classifier-free guidance, image metrics next
to their noise floor) and a text-to-image latent diffusion model of the captioned digits
(`genlab.demo_text`), one HTML report.

Each (dataset, preset) model is an ordinary run (config.json, checkpoints, metrics.jsonl)
under `out/<dataset>-<preset>/`, trained by `genlab.runs.train_run` and reloaded with its EMA
weights by `genlab.runs.load_run`. Models train in parallel worker processes with one
thread each, which is the fastest use of a small CPU for networks this size.

The target: sliced W2 to held-out data within 2x the floor, the sliced W2 between two
independent held-out-size draws of the data. The digits model runs as one more job of the
same pool (started first: it is the longest).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from genlab import viz
from genlab.config import RunConfig
from genlab.demo_text import TEXT_FULL, TEXT_QUICK, TextJob, run_text_job
from genlab.diffusion.paths import NoisePath
from genlab.progress import JobBoard, JobReporter, torch_threads
from genlab.report import write_report
from genlab.runs import (
    METRICS_FILE,
    Data,
    Run,
    SampleSpec,
    draw,
    evaluate,
    evaluate_images,
    load_run,
    make_data,
    test_labels,
    train_run,
)

TARGET_RATIO = 2.0
TRAIN_SHARE = 0.8  # the part of a job's progress bar that is training (then sampling)


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains and how it samples."""

    datasets: tuple[str, ...]
    presets: tuple[str, ...]
    samplers: tuple[tuple[str, int], ...]  # (sampler, nfe)
    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    n_train: int
    n_test: int
    hidden: int
    depth: int
    workers: int


FULL = DemoPlan(
    datasets=("gmm-ring", "moons"),
    presets=("flow-matching", "edm", "ddpm"),
    samplers=(("euler", 10), ("euler", 50), ("heun", 15), ("heun", 35), ("dpmpp_2m", 10),
              ("dpmpp_2m", 20), ("ddim", 20), ("ddpm", 50), ("euler_ancestral", 20)),
    steps=3000, batch_size=256, lr=2e-3, ema_decay=0.995, n_train=20_000, n_test=2_000,
    hidden=256, depth=3, workers=2,
)  # fmt: skip
QUICK = DemoPlan(
    datasets=("gmm-ring",), presets=("flow-matching", "edm", "ddpm"),
    samplers=(("euler", 4), ("heun", 5)), steps=20, batch_size=128, lr=2e-3, ema_decay=0.9,
    n_train=1_000, n_test=500, hidden=64, depth=2, workers=1,
)  # fmt: skip


@dataclass(frozen=True)
class DigitsPlan:
    """The digits part of the demo: one class-conditional UNet, sampled many ways."""

    preset: str
    channels: int
    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    label_dropout: float
    samplers: tuple[tuple[str, int], ...]  # (sampler, nfe), each evaluated at w = 1
    guidance: tuple[float, ...]  # scales w, each sampled with `guidance_sampler`
    guidance_sampler: tuple[str, int]
    n_eval: int  # samples per evaluation (the test split has 360 images)


DIGITS_FULL = DigitsPlan(
    preset="ddpm", channels=16, steps=1500, batch_size=128, lr=2e-3, ema_decay=0.995,
    label_dropout=0.15, samplers=(("ddim", 20), ("dpmpp_2m", 20), ("heun", 35), ("ddpm", 100)),
    guidance=(0.0, 1.0, 3.0), guidance_sampler=("dpmpp_2m", 20), n_eval=360,
)  # fmt: skip
DIGITS_QUICK = DigitsPlan(
    preset="ddpm", channels=8, steps=20, batch_size=64, lr=2e-3, ema_decay=0.9,
    label_dropout=0.15, samplers=(("ddim", 4),), guidance=(0.0, 3.0),
    guidance_sampler=("ddim", 4), n_eval=100,
)  # fmt: skip


def _train_section(steps: int, batch_size: int, lr: float, ema_decay: float) -> dict[str, Any]:
    """The demo's training settings: one checkpoint at the end, about 60 log lines."""
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay,
            "warmup_steps": min(100, steps), "checkpoint_every": steps,
            "log_every": max(1, steps // 60), "progress": False}  # fmt: skip


def digits_config(plan: DigitsPlan) -> RunConfig:
    """The run config of the demo's digits model."""
    return RunConfig.from_dict({
        "data": {"name": "digits", "labels": True},
        "model": {"preset": plan.preset, "num_classes": 10,
                  "label_dropout": plan.label_dropout},
        "net": {"name": "unet", "channels": plan.channels, "channel_mult": [1, 2],
                "num_res_blocks": 1, "attention_levels": [], "head_dim": plan.channels},
        "train": _train_section(plan.steps, plan.batch_size, plan.lr, plan.ema_decay),
        "sample": {"n": plan.n_eval},
    })  # fmt: skip


def demo_config(dataset: str, preset: str, plan: DemoPlan) -> RunConfig:
    """The run config of one demo model."""
    return RunConfig.from_dict({
        "data": {"name": dataset, "n_train": plan.n_train, "n_test": plan.n_test, "seed": 0},
        "model": {"preset": preset},
        "net": {"name": "mlp", "hidden": plan.hidden, "depth": plan.depth},
        "train": _train_section(plan.steps, plan.batch_size, plan.lr, plan.ema_decay),
        "sample": {"n": plan.n_test},
    })  # fmt: skip


@dataclass(frozen=True)
class Job:
    dataset: str
    preset: str
    config: dict[str, Any]
    run_dir: str
    samplers: tuple[tuple[str, int], ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.preset}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _sample_rows(job: Job, run: Run, data: Data) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Every (sampler, nfe) of the job: metrics rows and the samples by panel title."""
    rows, panels = [], {}
    for sampler, nfe in job.samplers:
        start = time.perf_counter()
        x = draw(run, data.test.shape[0], SampleSpec(sampler, nfe), seed=0)
        seconds = time.perf_counter() - start
        metrics = {k: _finite(v) for k, v in evaluate(x, data, seed=0).items()}
        ratio = metrics["sw2_ratio"]
        meets = ratio is not None and ratio <= TARGET_RATIO
        rows.append({"sampler": sampler, "nfe": nfe, "seconds": seconds, **metrics,
                     "meets_target": meets})  # fmt: skip
        panels[f"{sampler} @ {nfe}"] = x
    return rows, panels


def _alpha(path: NoisePath, sigma: float) -> float:
    """alpha(t) of the path at noise level sigma (1 at sigma = 0)."""
    if sigma <= 0:
        return 1.0
    t = path.t_from_noise(torch.tensor([sigma], dtype=torch.float64))
    return float(path.coefs(t).alpha)


def _path_trajectory(run: Run, n: int = 200) -> list[Tensor]:
    """Euler PF-ODE paths of n points in the path's own coordinates x_t = alpha(t) * x."""
    steps: list[tuple[Tensor, float]] = []

    def keep(info: dict[str, Any]) -> None:
        steps.append((info["x"].clone(), float(info["sigma"])))

    x = draw(run, n, SampleSpec("euler", 20), seed=1, callback=keep)
    path = run.model.objective.path
    return [state * _alpha(path, sigma) for state, sigma in steps] + [x]


def _plots(job: Job, run: Run, data: Data, panels: dict[str, Tensor]) -> dict[str, str]:
    """Loss curve, sample grid and a trajectory plot; paths relative to the demo directory."""
    run_dir = run.run_dir
    viz.plot_loss_curve(run_dir / METRICS_FILE, run_dir / "loss.png")
    viz.plot_grid(panels, run_dir / "samples.png", data=data.test)
    viz.plot_trajectories(_path_trajectory(run), run_dir / "trajectory.png", data=data.test)
    return {k: f"{job.name}/{k}.png" for k in ("loss", "samples", "trajectory")}


def run_job(job: Job, reporter: JobReporter | None = None) -> dict[str, Any]:
    """Train one model, sample it with every sampler, plot; return its part of the report.

    Runs on one thread: intra-op parallelism only slows networks this small down.
    """
    with torch_threads(1):
        return _run_job(job, reporter)


def _run_job(job: Job, reporter: JobReporter | None) -> dict[str, Any]:
    run_dir = Path(job.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo owns out/<dataset>-<preset>
    start, cpu_start = time.perf_counter(), time.process_time()
    cfg = RunConfig.from_dict(job.config)
    on_log = None if reporter is None else reporter.steps(cfg.train.steps, TRAIN_SHARE)
    result, _ = train_run(cfg, run_dir, on_log=on_log)
    train_seconds = time.perf_counter() - start
    if reporter is not None:
        reporter.report("sampling", TRAIN_SHARE)
    run = load_run(run_dir)  # the EMA weights, as `genlab sample` would use them
    data = make_data(run.config.data)
    rows, panels = _sample_rows(job, run, data)
    images = _plots(job, run, data, panels)
    return {"name": job.name, "dataset": job.dataset, "preset": job.preset,
            "steps": result.steps, "final_loss": result.final_loss,
            "train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start,
            "rows": rows, "images": images}  # fmt: skip


@dataclass(frozen=True)
class DigitsJob:
    plan: DigitsPlan
    run_dir: str
    name: str = "digits"


def _class_rows(x: Tensor, labels: Tensor, per_class: int = 10) -> Tensor:
    """Up to `per_class` samples of each class, class by class: a grid row per class."""
    rows = [x[labels == k][:per_class] for k in range(int(labels.max()) + 1)]
    return torch.cat([r for r in rows if r.shape[0] == per_class] or [x[:per_class]])


def _digits_row(run: Run, data: Data, spec: SampleSpec, w: float, grid: Path) -> dict[str, Any]:
    """One evaluation of the digits model: image metrics vs the floor, and a class grid."""
    from genlab.imagegrid import save_image_grid

    labels = test_labels(data, run.config.sample.n)
    start = time.perf_counter()
    x = draw(run, labels.shape[0], replace(spec, guidance=w), seed=0, cond=labels)
    seconds = time.perf_counter() - start
    metrics = evaluate_images(x, data, labels=labels, seed=0)
    save_image_grid(_class_rows(x.clamp(-1, 1), labels), grid, nrow=10, scale=4)
    return {"sampler": spec.sampler, "nfe": spec.nfe, "guidance": w, "seconds": seconds,
            **{k: _finite(v) for k, v in metrics.items()}, "grid": grid.name}  # fmt: skip


def run_digits_job(job: DigitsJob, reporter: JobReporter | None = None) -> dict[str, Any]:
    """Train the digits model; evaluate every sampler (w = 1) and every guidance scale."""
    with torch_threads(1):
        return _digits_job(job, reporter)


def _digits_job(job: DigitsJob, reporter: JobReporter | None) -> dict[str, Any]:
    plan, run_dir = job.plan, Path(job.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    on_log = None if reporter is None else reporter.steps(plan.steps, TRAIN_SHARE)
    result, _ = train_run(digits_config(plan), run_dir, on_log=on_log)
    train_seconds = time.perf_counter() - start
    if reporter is not None:
        reporter.report("sampling", TRAIN_SHARE)
    run = load_run(run_dir)
    data = make_data(run.config.data)
    rows = [_digits_row(run, data, SampleSpec(s, nfe), 1.0, run_dir / f"grid-{s}-{nfe}.png")
            for s, nfe in plan.samplers]  # fmt: skip
    spec = SampleSpec(*plan.guidance_sampler)
    guided = [_digits_row(run, data, spec, w, run_dir / f"grid-w{w:g}.png")
              for w in plan.guidance]  # fmt: skip
    viz.plot_loss_curve(run_dir / METRICS_FILE, run_dir / "loss.png")
    return {"name": job.name, "preset": plan.preset, "steps": result.steps,
            "final_loss": result.final_loss, "train_seconds": train_seconds,
            "total_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start,
            "params": sum(p.numel() for p in run.model.parameters()),
            "rows": rows, "guidance_rows": guided, "dir": run_dir.name}  # fmt: skip


AnyJob = Job | DigitsJob | TextJob


def _run_any(job: AnyJob, reporter: JobReporter | None = None) -> dict[str, Any]:
    if isinstance(job, DigitsJob):
        return run_digits_job(job, reporter)
    if isinstance(job, TextJob):
        return run_text_job(job, reporter)
    return run_job(job, reporter)


def _cost(job: AnyJob) -> float:
    """Expected cost of a job in seconds of one core (measured on the full plans)."""
    if isinstance(job, DigitsJob):
        return 0.065 * job.plan.steps + 40.0
    if isinstance(job, TextJob):
        return 0.02 * job.plan.ae_steps + 0.05 * job.plan.steps + 10.0
    return 0.012 * RunConfig.from_dict(job.config).train.steps + 20.0


def _run_all(jobs: list[AnyJob], workers: int, console: Console) -> list[dict[str, Any]]:
    """Every job's result, in order, on `workers` processes of one torch thread each, with
    one progress bar over all of them."""
    if workers <= 1:
        return [_run_any(job) for job in jobs]
    ctx = get_context("spawn")  # fresh interpreters: no torch thread pools inherited by fork
    board = JobBoard({job.name: _cost(job) for job in jobs}, console)
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = {job.name: pool.submit(_run_any, job, JobReporter(queue, job.name))
                   for job in jobs}  # fmt: skip
        board.run(queue, lambda: [name for name, f in futures.items() if f.done()])
        return [futures[job.name].result() for job in jobs]


def _summary(results: list[dict[str, Any]]) -> Table:
    table = Table(title=f"demo: sliced W2 vs held-out data (target: <= {TARGET_RATIO:g} x floor)")
    for col in ("model", "sampler", "nfe", "SW2", "floor", "ratio", "MMD", "energy", "logp gap",
                "meets"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "sampler") else "right")
    for res in results:
        for row in res["rows"]:
            table.add_row(res["name"], row["sampler"], str(row["nfe"]),
                          *(_fmt(row.get(k)) for k in ("sliced_wasserstein", "sw2_floor",
                            "sw2_ratio", "mmd_rbf", "energy_distance", "log_density_gap")),
                          "yes" if row["meets_target"] else "no")  # fmt: skip
    return table


def _digits_summary(digits: dict[str, Any]) -> Table:
    table = Table(title="demo: class-conditional digits UNet, image metrics (floor: real vs real)")
    for col in ("sampler", "nfe", "w", "FD", "floor", "KID", "floor", "prec", "floor", "recall",
                "floor", "acc", "ceiling"):  # fmt: skip
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for row in digits["rows"] + digits["guidance_rows"]:
        table.add_row(row["sampler"], str(row["nfe"]), f"{row['guidance']:g}",
                      *(_fmt(row.get(k)) for k in ("fd", "fd_floor", "kid", "kid_floor",
                        "precision", "precision_floor", "recall", "recall_floor", "accuracy",
                        "accuracy_floor")))  # fmt: skip
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def run_demo(out: Path | str, *, quick: bool = False, console: Console | None = None) -> Path:
    """Run the demo into `out`; return the path of `index.html`."""
    console = console or Console()
    plan, digits_plan = (QUICK, DIGITS_QUICK) if quick else (FULL, DIGITS_FULL)
    text_plan = TEXT_QUICK if quick else TEXT_FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[AnyJob] = [DigitsJob(digits_plan, str(out / "digits")),  # longest first
                          TextJob(text_plan, str(out / "text"))]  # fmt: skip
    jobs += [Job(d, p, demo_config(d, p, plan).to_dict(), str(out / f"{d}-{p}"), plan.samplers)
             for d in plan.datasets for p in plan.presets]  # fmt: skip
    cores = os.cpu_count() or 1
    workers = max(1, min(plan.workers, cores, len(jobs)))
    console.print(
        f"demo: {len(jobs)} jobs on {workers} worker process(es) x 1 torch thread "
        f"({cores} cores): {len(jobs) - 2} toy models ({plan.steps} steps each), a "
        f"digits UNet ({digits_plan.steps} steps) and a text-to-image latent model "
        f"({text_plan.ae_steps} + {text_plan.steps} steps), into {out}"
    )
    start = time.perf_counter()
    digits, text, *results = _run_all(jobs, workers, console)
    seconds = time.perf_counter() - start
    cpu = sum(res["cpu_seconds"] for res in results) + digits["cpu_seconds"] + text["cpu_seconds"]
    meta = {"plan": asdict(plan), "digits_plan": asdict(digits_plan),
            "text_plan": asdict(text_plan), "quick": quick,
            "seconds": seconds, "workers": workers, "cpu_seconds": cpu,
            "target_ratio": TARGET_RATIO}  # fmt: skip
    record = {**meta, "results": results, "digits": digits, "text": text}
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    index = write_report(out, results, meta, digits=digits, text=text)
    console.print(_summary(results))
    console.print(_digits_summary(digits))
    if "skipped" in text:
        console.print(f"text to image: skipped ({text['skipped']})")
    else:
        console.print(f"text to image: FD {text['metrics']['fd']:.3g} (floor "
                      f"{text['metrics']['fd_floor']:.3g}), accuracy "
                      f"{text['metrics']['accuracy']:.3f} on held-out prompts; "
                      f"{text['cpu_seconds']:.0f} CPU s")  # fmt: skip
    met = sum(r["meets_target"] for res in results for r in res["rows"])
    total = sum(len(res["rows"]) for res in results)
    console.print(f"{met}/{total} (model, sampler) runs meet the target; {seconds:.0f} s wall, "
                  f"{cpu:.0f} s CPU in the model jobs")  # fmt: skip
    return index
