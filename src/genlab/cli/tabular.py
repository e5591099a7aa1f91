"""`genlab bench tabular`: real tables in raw units, every family next to the classical
density baselines (`genlab.bench.tabular`)."""

from __future__ import annotations

from typing import Annotated

import typer

from genlab.cli.app import bench_app, console
from genlab.cli.bench import MaxSecondsOpt, OutOpt, SetOpt, ThreadsOpt, names


@bench_app.command("tabular")
def bench_tabular(
    tables: Annotated[
        str, typer.Option("--tables", help="Comma-separated: wine, diabetes, iris.")
    ] = "wine,diabetes,iris",
    configs: Annotated[
        str, typer.Option("--configs", help="Directory of <family>.toml run configs.")
    ] = "configs/tabular",
    families: Annotated[
        str | None, typer.Option("--families", help="Comma-separated subset of the configs.")
    ] = None,
    max_seconds: MaxSecondsOpt = None,
    set_: SetOpt = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run: 30 steps.")] = False,
    cache: Annotated[
        str, typer.Option("--cache", help="Directory of the tables, trained runs and rows.")
    ] = "runs/bench-tabular",
    out: OutOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Test NLL in raw units and sample SW2 of every family on scikit-learn's wine, diabetes
    (raw units) and iris tables, next to a full-covariance Gaussian, a GaussianMixture and
    a Gaussian KDE selected on the same validation split."""
    from genlab.bench import tabular as bench

    bench.main(
        names(tables) or [], configs=configs, families=names(families),
        max_seconds=max_seconds, overrides=set_ or [], quick=quick, cache=cache, out=out,
        threads=threads, console=console,
    )  # fmt: skip
