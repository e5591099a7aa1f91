"""Decoding of token priors on the command line: the `--decode`, `--temperature`, `--top-k`
and `--top-p` options of `genlab sample` / `genlab eval`, and `genlab bench medusa`."""

from __future__ import annotations

from typing import Annotated

import typer

from genlab.cli.app import bench_app, console

__all__ = ["DecodeOpt", "TemperatureOpt", "TopKOpt", "TopPOpt"]

DecodeOpt = Annotated[
    str | None,
    typer.Option(
        "--decode",
        help="Token priors: plain (KV cache), medusa (greedy at "
        "temperature 0, else typical acceptance) or speculative (exact sampling).",
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option("--temperature", help="Token priors: softmax temperature (0 = greedy)."),
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help="Token priors: sample from the k likeliest codes.")
]
TopPOpt = Annotated[
    float | None,
    typer.Option("--top-p", help="Token priors: sample from the nucleus of probability p."),
]


@bench_app.command("medusa")
def bench_medusa(
    run_dir: Annotated[str, typer.Argument(help="A token-prior run with Medusa heads.")],
    sequences: Annotated[
        int, typer.Option("--sequences", min=1, help="Greedy prompts checked token for token.")
    ] = 1000,
    timing: Annotated[
        int, typer.Option("--timing", min=1, help="Sequences per decoder and seed in timings.")
    ] = 64,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Timing repeats (median).")] = 5,
    samples: Annotated[
        int, typer.Option("--samples", min=2, help="Sequences per decoder for histograms and FD.")
    ] = 1000,
    prompt_rows: Annotated[
        int, typer.Option("--prompt-rows", min=0, help="Rows of codes given to greedy prompts.")
    ] = 1,
    temperature: Annotated[
        float, typer.Option("--temperature", min=0.0, help="Temperature of the sampling runs.")
    ] = 1.0,
    tree_nodes: Annotated[
        str | None,
        typer.Option(
            "--tree-nodes", help="Medusa tree sizes to compare, e.g. 4,8,16 (default: the run's)."
        ),
    ] = None,
    draft: Annotated[
        int | None, typer.Option("--draft", min=1, help="Heads drafting for speculative sampling.")
    ] = None,
    out: Annotated[str | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
) -> None:
    """Medusa and speculative decoding against plain KV-cached decoding at batch 1: head
    accuracies, greedy identity, tokens per forward, speedups, a chi-square test of exact
    speculative sampling and the FD of typical acceptance."""
    from genlab.bench import medusa as bench
    from genlab.errors import ConfigError

    try:
        trees = [int(t) for t in tree_nodes.split(",")] if tree_nodes else None
    except ValueError:
        raise ConfigError(f"--tree-nodes {tree_nodes}: expected sizes like 4,8,16") from None
    if trees is not None and min(trees) < 1:
        raise ConfigError(f"--tree-nodes {tree_nodes}: sizes must be >= 1")
    bench.main(
        run_dir,
        console=console,
        out=out,
        threads=threads,
        sequences=sequences,
        timing=timing,
        seeds=seeds,
        samples=samples,
        prompt_rows=prompt_rows,
        temperature=temperature,
        trees=trees,
        draft=draft,
    )
