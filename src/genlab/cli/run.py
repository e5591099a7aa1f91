"""`genlab train`, `genlab sample` and `genlab eval`: a run from a config, its samples, and
its quality next to the held-out test split."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from genlab.cli.app import app, console
from genlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from genlab.config import RunConfig
    from genlab.runs import Run, SampleSpec

SAMPLE_SUFFIXES = (".npy", ".png")


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
) -> None:
    """Train a model from a TOML config into a run directory."""
    from genlab.config import load_config

    cfg = load_config(config, set_ or [])  # mistakes are reported before torch loads
    from genlab.runs import train_run

    run_dir = out if out is not None else Path("runs") / config.stem
    with _fallback_hint(run_dir, resume=True):
        result, _ = train_run(cfg, run_dir, resume=resume)
    loss = "-" if result.final_loss is None else f"{result.final_loss:.4g}"
    console.print(
        f"trained {result.steps} steps (final loss {loss}, {result.elapsed:.1f} s); "
        f"checkpoint {result.checkpoint}"
    )


@contextlib.contextmanager
def _fallback_hint(run_dir: Path, *, resume: bool = False) -> Iterator[None]:
    """A broken checkpoint file becomes one line naming it and the intact checkpoint to fall
    back to: `--checkpoint NAME` to load it, or the directories to delete to resume from it."""
    from genlab.train import checkpoint as ckpt

    try:
        yield
    except ckpt.CorruptCheckpoint as err:
        intact = [c for c in ckpt.intact_checkpoints(run_dir, resumable=resume)
                  if c != err.checkpoint]  # fmt: skip
        if intact and not resume:
            advice = f"the newest intact checkpoint is {intact[0].name}: pass --checkpoint " \
                     f"{intact[0].name}"  # fmt: skip
        elif intact:
            step = ckpt.checkpoint_step(intact[0])
            newer = [str(c) for c in ckpt.step_checkpoints(run_dir)
                     if ckpt.checkpoint_step(c) > step]  # fmt: skip
            advice = f"to resume from {intact[0].name}, the newest intact checkpoint, " \
                     f"delete {' and '.join(newer)}"  # fmt: skip
        else:
            advice = "no other checkpoint of the run is intact"
            if resume and ckpt.intact_checkpoints(run_dir):
                advice += " and holds a trainer state (best/ can be sampled: --checkpoint best)"
        raise DataError(f"{err}; {advice}") from None


CheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", help="Checkpoint to load: best, latest, step_<8 digits> or a "
                 "step number (default: the run's best if it selects on validation, else the "
                 "latest)."),
]  # fmt: skip


# ----------------------------------------------------------------------------- sample


def _spec(
    cfg: RunConfig,
    sampler: str | None,
    nfe: int | None,
    schedule: str | None,
    guidance: float | None = None,
) -> SampleSpec:
    """Flags first, then the run's [sample] section, then the family's defaults."""
    from genlab.runs import SampleSpec

    s = cfg.sample
    return SampleSpec(sampler or s.sampler, nfe or s.nfe, schedule or s.schedule, guidance)


SamplerOpt = Annotated[str | None, typer.Option("--sampler", help="Sampler name (run default).")]
NfeOpt = Annotated[int | None, typer.Option("--nfe", min=1, help="Network evaluations.")]
ScheduleOpt = Annotated[str | None, typer.Option("--schedule", help="Noise-level grid name.")]
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
    checkpoint: CheckpointOpt = None,
) -> None:
    """Draw samples from a trained run; write them as .npy, a .png scatter over test data
    (points) or a .png image grid (image runs)."""
    from genlab.runs.record import read_run_config

    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out {out}: unsupported suffix (use {' or '.join(SAMPLE_SUFFIXES)})")
    read_run_config(run_dir)  # a missing or corrupt run is reported before torch loads
    import numpy as np

    from genlab.runs import draw, load_run

    with _fallback_hint(run_dir):
        run = load_run(run_dir, checkpoint)
    png = out.suffix.lower() == ".png"
    count = n or (min(run.config.sample.n, GRID_N) if run.is_image and png else run.config.sample.n)
    seed = run.config.sample.seed if seed is None else seed
    labels, per_row = _labels(run, count, class_)
    count = count if labels is None else labels.shape[0]
    _needs_labels(guidance, labels)
    x = draw(run, count, _spec(run.config, sampler, nfe, schedule, guidance), seed=seed,
             cond=labels)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    if not png:
        np.save(out, x.numpy())
        if labels is not None:
            np.save(out.with_name(out.stem + "-labels.npy"), labels.numpy())
    elif run.is_image:
        from genlab.imagegrid import save_image_grid

        save_image_grid(x.clamp(-1, 1), out, nrow=per_row)
    else:
        _scatter(run, x, out)
    console.print(f"wrote {count} samples to {out}")


def _needs_labels(guidance: float | None, labels: torch.Tensor | None) -> None:
    if guidance is not None and labels is None:
        raise ConfigError("--guidance: needs a class-conditional run (model.num_classes > 0)")


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
        evaluate,
        evaluate_images,
        load_run,
        make_data,
        sampling_record,
        test_labels,
    )
    from genlab.train.checkpoint import atomic_write

    with _fallback_hint(run_dir):
        run = load_run(run_dir, checkpoint)
    data = make_data(run.config.data)
    estimates = _test_likelihood(run, data) if likelihood else []
    spec = _spec(run.config, sampler, nfe, schedule, guidance)
    seed = run.config.sample.seed if seed is None else seed
    count = n or data.test.shape[0]
    labels = test_labels(data, count) if run.config.model.num_classes > 0 else None
    _needs_labels(guidance, labels)
    x = draw(run, count, spec, seed=seed, cond=labels)
    if run.is_image:
        metrics = evaluate_images(x, data, labels=labels, seed=seed)
        meets = metrics["fd_ratio"] <= IMAGE_TARGET_RATIO
    else:
        metrics = evaluate(x, data, seed=seed)
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
    if own:
        console.print(_metrics_table(f"{run.family.name}: {run.family.describe(run.config)}", own))
    for e in estimates:
        bpd = "" if e.bpd is None else f", {e.bpd:.4f} ± {e.bpd_se:.4f} bits/dim"
        console.print(f"test NLL ({e.name}, {e.n} examples): {e.nats:.4f} ± {e.nats_se:.4f} "
                      f"nats{bpd}")  # fmt: skip
    console.print(f"wrote {run.run_dir / 'eval.json'}")


def _test_likelihood(run: Run, data: Any) -> list[Any]:
    from genlab.eval.likelihood import estimate

    if run.family.likelihood is None:
        raise ConfigError(f"--likelihood: model.family = {run.family.name!r} has no likelihood")
    s = run.config.likelihood
    x = data.test[: s.n]
    cond = None if data.test_labels is None else data.test_labels[: s.n]
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


