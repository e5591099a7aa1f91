"""`genlab bench ...`: the reproducible benchmark tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli.app import bench_app, console
from genlab.errors import ConfigError

# the options every config-table benchmark shares
MaxSecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--max-seconds",
        help="Training CPU-second budget of every config (overrides train.max_seconds).",
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key of every config.")]
OutOpt = Annotated[str | None, typer.Option("--out", help="Write the rows as JSON here.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="torch CPU threads.")]


def names(text: str | None) -> list[str] | None:
    """A comma-separated list of names (None for none)."""
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


@bench_app.command("samplers")
def bench_samplers(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller, faster table.")] = False,
    beds: Annotated[
        str | None,
        typer.Option(
            "--beds",
            help="Comma-separated beds, e.g. ring8_D2/sd,gmm16_D64/edm (default: every bed).",
        ),
    ] = None,
    nfe: Annotated[str, typer.Option("--nfe", help="Comma-separated NFE budgets.")] = "10,20",
    n: Annotated[int, typer.Option("--n", min=2, help="Evaluation trajectories per bed.")] = 4096,
    cache: Annotated[
        str | None, typer.Option("--cache", help="Directory keeping the beds' exact endpoints.")
    ] = "runs/bench-samplers",
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
) -> None:
    """genlab's public samplers and grids (named and fitted) on analytic Gaussian mixtures
    (exact denoiser), next to the best diffusers / k-diffusion sampler on the same beds."""
    import torch

    from genlab.bench import samplers as bench
    from genlab.bench.beds import bed

    torch.set_num_threads(threads)
    names = tuple(v.strip() for v in beds.split(",") if v.strip()) if beds else None
    try:
        nfes = tuple(int(v) for v in nfe.split(","))
        for name in names or ():
            bed(name)
    except ValueError as err:
        raise ConfigError(f"--beds/--nfe: {err}") from None
    bench.main(quick=quick, console=console, bed_names=names, nfes=nfes, n_samples=n,
               cache=None if cache is None else Path(cache))  # fmt: skip


@bench_app.command("likelihood")
def bench_likelihood(
    data: Annotated[
        str, typer.Option("--data", help="digits (bits/dim) or ring (nats).")
    ] = "digits",
    configs: Annotated[
        str, typer.Option("--configs", help="Directory of <data>-<name>.toml run configs.")
    ] = "configs/likelihood",
    families: Annotated[
        str | None,
        typer.Option(
            "--families",
            help="Comma-separated subset of the configs "
            "(names without the data prefix, e.g. glow,edm).",
        ),
    ] = None,
    max_seconds: MaxSecondsOpt = None,
    set_: SetOpt = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run: 40 steps.")] = False,
    cache: Annotated[
        str, typer.Option("--cache", help="Directory of the trained runs and their rows.")
    ] = "runs/bench-likelihood",
    out: OutOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Test likelihood of every model family on the same data, with training time: each
    config of --configs is trained (validation-selected, early-stopped) and evaluated."""
    from genlab.bench import likelihood as bench

    bench.main(
        data, configs=configs, families=names(families), max_seconds=max_seconds,
        overrides=set_ or [], quick=quick, cache=cache, out=out, threads=threads,
        console=console,
    )  # fmt: skip
