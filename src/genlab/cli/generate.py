"""`genlab generate`: images from a text-conditioned run for prompts.

    genlab generate RUN "a handwritten seven" -n 16 --guidance 3 --negative "a blurry seven" \\
        --sampler dpmpp_2m --nfe 20 --out seven.png

draws n images per prompt (a .png grid: square for one prompt, a row per prompt for
several; or a .npy array) with classifier-free guidance whose unconditional branch is the
empty prompt, or the negative prompt. Prompts go through the run's embedding cache
(`RUN/text/embeddings.safetensors`), so the text encoder is loaded only for a prompt the
run has not seen; the status line says whether it was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from genlab.cli.app import app, console
from genlab.cli.run import (
    SAMPLE_SUFFIXES,
    GuidanceOpt,
    NfeOpt,
    SamplerOpt,
    ScheduleOpt,
    SeedOpt,
    sample_spec,
)
from genlab.errors import ConfigError

__all__ = ["generate"]

PromptArg = Annotated[
    list[str], typer.Argument(help='One or more prompts ("" is the unconditional model).')
]
NegativeOpt = Annotated[
    str | None,
    typer.Option("--negative", help="Negative prompt: replaces the empty prompt as the "
                 "unconditional branch of guidance (needs --guidance)."),
]  # fmt: skip
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="CPU threads of torch.")]


def _check_run(run_dir: Path, out: Path) -> None:
    """A bad output name or a run that takes no prompts, reported before torch loads."""
    from genlab.runs.record import read_run_config

    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out {out}: unsupported suffix (use {' or '.join(SAMPLE_SUFFIXES)})")
    cfg, _ = read_run_config(run_dir)
    if cfg.text is None:
        raise ConfigError(f"{run_dir}: not a text-conditioned run (no data.captions); "
                          "draw from it with genlab sample")  # fmt: skip


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A trained text-conditioned run directory.")],
    prompts: PromptArg,
    out: Annotated[Path, typer.Option("--out", help="Output file: .png grid or .npy.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Images per prompt.")] = 16,
    guidance: GuidanceOpt = None,
    negative: NegativeOpt = None,
    sampler: SamplerOpt = None,
    nfe: NfeOpt = None,
    schedule: ScheduleOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Generate images for prompts from a text-conditioned run."""
    _check_run(run_dir, out)
    start = time.perf_counter()
    import numpy as np
    import torch

    from genlab.runs import generate as generate_images
    from genlab.runs import load_run, run_store

    torch.set_num_threads(threads)
    run = load_run(run_dir)
    wanted = [*prompts, *([negative or ""] if guidance is not None else [])]
    new = len(run_store(run.config, run_dir).missing(wanted))
    spec = sample_spec(run.config, sampler, nfe, schedule, guidance)
    seed = run.config.sample.seed if seed is None else seed
    x = generate_images(run, prompts, n, spec, negative=negative, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, x.numpy())
    else:
        from genlab.imagegrid import save_image_grid

        save_image_grid(x.clamp(-1, 1), out, nrow=n if len(prompts) > 1 else None)
    encoder = f"encoded {new} new text(s)" if new else "all texts cached"
    console.print(f"wrote {x.shape[0]} images to {out} ({encoder}; "
                  f"{time.perf_counter() - start:.1f} s)")  # fmt: skip
