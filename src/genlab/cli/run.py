"""`genlab train`, `genlab sample` and `genlab eval`: a run from a config, its samples, and
its quality next to the held-out test split."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from genlab.cli.app import app, console
from genlab.cli.checkpoints import CheckpointOpt, fallback_hint
from genlab.cli.decode import DecodeOpt, TemperatureOpt, TopKOpt, TopPOpt
from genlab.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from genlab.config import RunConfig
    from genlab.runs import Run, SampleSpec
    from genlab.train import TrainResult

SAMPLE_SUFFIXES = (".npy", ".csv", ".png")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="A TOML run config, e.g. configs/moons-fm.toml.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set train.steps=100.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default runs/<config stem>).")
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option("--nproc", min=1, help="Data-parallel processes on this machine, started "
                     "through torchrun (gloo on CPU, NCCL on GPUs)."),
    ] = None,  # fmt: skip
    max_restarts: Annotated[
        int,
        typer.Option("--max-restarts", min=0, help="Restart the processes this often after a "
                     "failure; they resume from the last checkpoint."),
    ] = 0,  # fmt: skip
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Intra-op CPU threads per process (default: "
                     "torch's; with --nproc N, the cores / N)."),
    ] = None,  # fmt: skip
) -> None:
    """Train a model from a TOML config into a run directory."""
    from genlab.config import load_config

    cfg = load_config(config, set_ or [])  # mistakes are reported before torch loads
    from genlab.runs import launch
    from genlab.train.distributed import torchrun_env

    run_dir = out if out is not None else Path("runs") / config.stem
    if torchrun_env():  # one rank of a job torchrun started
        if nproc is not None:
            raise ConfigError("--nproc: this process was started by torchrun already")
        with fallback_hint(run_dir, resume=True):
            result = launch.train_worker(cfg, run_dir, resume=resume, threads=threads)
    elif (nproc or 1) > 1 or max_restarts > 0:
        _launch(cfg, config, set_ or [], run_dir, resume=resume, nproc=nproc or 1,
                max_restarts=max_restarts, threads=threads)  # fmt: skip
        return  # rank 0 printed the summary
    else:
        with fallback_hint(run_dir, resume=True):
            result = _train_here(cfg, run_dir, resume, threads)
    if result is not None:
        _print_columns(run_dir)
        loss = "-" if result.final_loss is None else f"{result.final_loss:.4g}"
        console.print(
            f"trained {result.steps} steps (final loss {loss}, {result.elapsed:.1f} s); "
            f"checkpoint {result.checkpoint}"
        )


def _train_here(cfg: RunConfig, run_dir: Path, resume: bool, threads: int | None) -> TrainResult:
    """Train in this process (`--threads`: torch's intra-op threads)."""
    from genlab.runs import train_run

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return train_run(cfg, run_dir, resume=resume)[0]


def _launch(
    cfg: RunConfig,
    config: Path,
    sets: list[str],
    run_dir: Path,
    *,
    resume: bool,
    nproc: int,
    max_restarts: int,
    threads: int | None,
) -> None:
    """Train on `nproc` processes through torchrun; a failure exits with its status and line."""
    from genlab.runs import launch

    launch.check_launch(cfg, run_dir, resume, nproc)
    per_worker = launch.worker_threads(nproc, threads)
    worker = launch.worker_argv(config, sets, run_dir, resume, per_worker)
    status, message = launch.launch(worker, nproc, max_restarts, per_worker)
    if status:
        if message:
            print(message, file=sys.stderr)
        raise typer.Exit(status)


def _print_columns(run_dir: Path) -> None:
    """The data transform of a run: what was done to which column (config.json's record)."""
    from genlab.data.columns import describe_record
    from genlab.runs.record import TRANSFORM_KEY, read_record

    record = read_record(run_dir).get(TRANSFORM_KEY)
    if record is not None:
        console.print(f"data transform: {describe_record(record)}", markup=False,
                      highlight=False)  # fmt: skip


# ----------------------------------------------------------------------------- sample


def sample_spec(
    cfg: RunConfig,
    sampler: str | None,
    nfe: int | None,
    schedule: str | None,
    guidance: float | None = None,
    decoding: tuple[str | None, float | None, int | None, float | None] = (None,) * 4,
) -> SampleSpec:
    """Flags first, then the run's [sample] section, then the family's defaults; `decoding`
    is (decode, temperature, top_k, top_p) of a token prior."""
    from genlab.runs import SampleSpec

    s = cfg.sample
    return SampleSpec(sampler or s.sampler, nfe or s.nfe, schedule or s.schedule, guidance,
                      *decoding)  # fmt: skip


SamplerOpt = Annotated[str | None, typer.Option("--sampler", help="Sampler name (run default).")]
NfeOpt = Annotated[int | None, typer.Option("--nfe", min=1, help="Network evaluations.")]
ScheduleOpt = Annotated[
    str | None,
    typer.Option("--schedule", help="Noise-level grid name, or 'fitted': a grid fitted to the "
                 "model for the sampler and NFE, cached in the run directory."),
]  # fmt: skip
SeedOpt = Annotated[
    int | None, typer.Option("--seed", min=0, help="Seed of the sampling noise (run default).")
]


ClassOpt = Annotated[
    str | None,
    typer.Option("--class", help="Class label K of every sample, or 'all' for a row per class "
                 "(class-conditional runs)."),
]  # fmt: skip
GuidanceOpt = Annotated[
    float | None,
    typer.Option("--guidance", help="Classifier-free guidance scale w (1 = conditional, "
                 "0 = unconditional; runs trained with label dropout)."),
]  # fmt: skip
GRID_N = 100  # default number of images in a .png grid


def _labels(run: Run, n: int, class_: str | None) -> tuple[torch.Tensor | None, int | None]:
    """Class labels (n,) for sampling and the images per grid row (None: square grid).

    Class-conditional runs without --class draw the classes in turn (0, 1, ..., K-1, 0, ...)."""
    import torch

    k = run.config.model.num_classes
    if k == 0:
        if class_ is not None:
            raise ConfigError("--class: the run is not class-conditional (model.num_classes = 0)")
        return None, None
    if class_ is None:
        return torch.arange(n) % k, None
    if class_ == "all":
        per_row = -(-n // k)
        return torch.arange(k).repeat_interleave(per_row)[: per_row * k], per_row
    try:
        label = int(class_)
    except ValueError:
        raise ConfigError(f"--class {class_}: expected an integer or 'all'") from None
    if not 0 <= label < k:
        raise ConfigError(f"--class {label}: must lie in 0..{k - 1}")
    return torch.full((n,), label, dtype=torch.long), None


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .npy (arrays) or .png.")],
    sampler: SamplerOpt = None,
    nfe: NfeOpt = None,
    n: Annotated[int | None, typer.Option("-n", "--n", min=1, help="Number of samples.")] = None,
    schedule: ScheduleOpt = None,
    seed: SeedOpt = None,
    class_: ClassOpt = None,
    guidance: GuidanceOpt = None,
    decode: DecodeOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    checkpoint: CheckpointOpt = None,
) -> None:
    """Draw samples from a trained run; write them as .npy, a .png scatter over test data
    (points) or a .png image grid (image runs). Token priors decode with --decode
    (plain, medusa, speculative), --temperature (0: greedy), --top-k and --top-p."""
    from genlab.runs.record import read_run_config

    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out {out}: unsupported suffix (use {' or '.join(SAMPLE_SUFFIXES)})")
    cfg, _ = read_run_config(run_dir)  # a missing or corrupt run is reported before torch loads
    if cfg.text is not None:
        raise ConfigError(f"{run_dir}: a text-conditioned run samples from prompts: "
                          f"genlab generate {run_dir} PROMPT --out ...")  # fmt: skip
    import numpy as np

    from genlab.runs import draw, load_run

    with fallback_hint(run_dir):
        run = load_run(run_dir, checkpoint)
    png = out.suffix.lower() == ".png"
    count = n or (min(run.config.sample.n, GRID_N) if run.is_image and png else run.config.sample.n)
    seed = run.config.sample.seed if seed is None else seed
    labels, per_row = _labels(run, count, class_)
    count = count if labels is None else labels.shape[0]
    _needs_labels(guidance, labels)
    decoding = (decode, temperature, top_k, top_p)
    spec = sample_spec(run.config, sampler, nfe, schedule, guidance, decoding)
    x = draw(run, count, spec, seed=seed, cond=labels, log=_log)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        _write_csv(run, x, out)
    elif not png:
        np.save(out, x.numpy())
        if labels is not None:
            np.save(out.with_name(out.stem + "-labels.npy"), labels.numpy())
    elif run.is_image:
        from genlab.imagegrid import save_image_grid

        save_image_grid(x.clamp(-1, 1), out, nrow=per_row)
    else:
        _scatter(run, x, out)
    console.print(f"wrote {count} samples to {out}")


def _write_csv(run: Run, x: torch.Tensor, out: Path) -> None:
    from genlab.data.points import write_csv

    if run.is_image:
        raise ConfigError(f"--out {out}: .csv is for point runs; use .npy or .png")
    write_csv(out, x.double().numpy(), run.header, run.column_decimals())


def _log(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _needs_labels(guidance: float | None, cond: Any) -> None:
    if guidance is not None and cond is None:
        raise ConfigError("--guidance: needs a class-conditional run (model.num_classes > 0) "
                          "or a text-conditioned one")  # fmt: skip


def _scatter(run: Run, x: torch.Tensor, out: Path) -> None:
    from genlab.runs import make_data
    from genlab.viz import plot_samples

    if x.shape[1] < 2:
        raise ConfigError(f"--out {out}: a scatter needs D >= 2 (got {x.shape[1]}); use .npy")
    title = f"{run.family.describe(run.config)}: samples"
    plot_samples(x, make_data(run.config.data).test, out, title=title)


# ----------------------------------------------------------------------------- eval


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null (JSON has no inf or NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}  # fmt: skip


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}")
    return table


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    sampler: SamplerOpt = None,
    nfe: NfeOpt = None,
    n: Annotated[
        int | None, typer.Option("-n", "--n", min=2, help="Samples (default: test-split size).")
    ] = None,
    schedule: ScheduleOpt = None,
    seed: SeedOpt = None,
    guidance: GuidanceOpt = None,
    decode: DecodeOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    likelihood: Annotated[
        bool,
        typer.Option(
            "--likelihood",
            help="Also the test log-likelihood ([likelihood] settings; bits/dim for image runs).",
        ),
    ] = False,
    checkpoint: CheckpointOpt = None,
) -> None:
    """Sample a run and compare with its held-out test split; write RUN_DIR/eval.json.

    Point runs: sliced W2, MMD, energy distance vs the floor. Image runs (8x8 grey): FD,
    KID, precision/recall (and class accuracy of conditional runs) in the digits network's
    feature space, each next to its noise floor (real train images vs the test split).
    --likelihood adds the test NLL (nats; bits/dim of the discrete pixels for image runs)."""
    from genlab.runs.record import read_run_config

    read_run_config(run_dir)  # a missing or corrupt run is reported before torch loads
    from genlab.runs import (
        draw,
        eval_condition,
        evaluate,
        evaluate_images,
        load_run,
        make_data,
        sampling_record,
    )
    from genlab.train.checkpoint import atomic_write

    with fallback_hint(run_dir):
        run = load_run(run_dir, checkpoint)
    data = make_data(run.config.data)
    estimates = _test_likelihood(run, data) if likelihood else []
    decoding = (decode, temperature, top_k, top_p)
    spec = sample_spec(run.config, sampler, nfe, schedule, guidance, decoding)
    seed = run.config.sample.seed if seed is None else seed
    count = n or data.test.shape[0]
    cond, uncond, labels = eval_condition(run, data, count, guidance)
    _needs_labels(guidance, cond)
    x = draw(run, count, spec, seed=seed, cond=cond, uncond=uncond, log=_log)
    if run.is_image:
        metrics = evaluate_images(x, data, labels=labels, seed=seed)
        meets = metrics["fd_ratio"] <= IMAGE_TARGET_RATIO
    else:
        metrics = evaluate(x, data, seed=seed, space=run.metric_space())
        meets = metrics["sw2_ratio"] <= 2.0
    own = run.family.metrics(run, data) if run.family.metrics is not None else {}
    used = sampling_record(run, spec)
    record: dict[str, Any] = {
        "checkpoint": str(run.checkpoint), **used, "n": count, "seed": seed,
        "guidance": guidance, "metrics": _json_safe(metrics), "meets_target": meets,
    }  # fmt: skip
    if own:
        record["family_metrics"] = _json_safe(own)
    if estimates:
        record["likelihood"] = [_json_safe(e.as_dict()) for e in estimates]
    atomic_write(run.run_dir / "eval.json", (json.dumps(record, indent=2) + "\n").encode())
    nfe = "" if used["nfe"] is None else f", nfe {used['nfe']}"
    title = f"{run.run_dir} ({used['sampler']}{nfe}, n {count})"
    table = _image_table(title, metrics) if run.is_image else _metrics_table(title, metrics)
    console.print(table)
    _print_columns(run.run_dir)
    if own:
        console.print(_metrics_table(f"{run.family.name}: {run.family.describe(run.config)}", own))
    for e in estimates:
        bpd = "" if e.bpd is None else f", {e.bpd:.4f} ± {e.bpd_se:.4f} bits/dim"
        mc = f" (estimator ± {e.mc_se:.4f} over {e.draws} draws)" if e.mc_se > 0 else ""
        console.print(f"test NLL ({e.name}, {e.n} examples): {e.nats:.4f} ± {e.nats_se:.4f} "
                      f"nats{bpd}{mc}")  # fmt: skip
    console.print(f"wrote {run.run_dir / 'eval.json'}")


def _test_likelihood(run: Run, data: Any) -> list[Any]:
    from genlab.eval.likelihood import estimate
    from genlab.runs import eval_condition

    if run.family.likelihood is None:
        raise ConfigError(f"--likelihood: model.family = {run.family.name!r} has no likelihood")
    s = run.config.likelihood
    x = data.test[: s.n]
    cond = eval_condition(run, data, x.shape[0])[0]  # the test labels or prompts, in order
    return estimate(run.model, x, s, run.family.likelihood(s), cond=cond, image=run.is_image)


IMAGE_TARGET_RATIO = 3.0  # FD within 3x its noise floor
IMAGE_METRICS = ("fd", "kid", "precision", "recall", "accuracy")


def _image_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    for col in ("metric", "value", "floor (real vs real)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in IMAGE_METRICS:
        if key in metrics:
            floor = metrics.get(f"{key}_floor")
            table.add_row(key, f"{metrics[key]:.4g}", "-" if floor is None else f"{floor:.4g}")
    table.add_row("fd / floor", f"{metrics['fd_ratio']:.3g}", "1")
    return table


