"""`genlab encode`: a tokenizer run's codes of its data set, for a prior to train on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli.app import app, console
from genlab.errors import ConfigError


@app.command()
def encode(
    run_dir: Annotated[Path, typer.Argument(help="A trained tokenizer run directory.")],
    out: Annotated[Path, typer.Option("--out", help="The codes file to write (.npz).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads (torch default).")
    ] = None,
) -> None:
    """Encode the run's train and test splits to codes (N, h, w) and write them to OUT.

    The file holds `train`, `test`, `codebook_size` and, when the data set has class
    labels, `train_labels` / `test_labels` (see genlab.tokens.codes)."""
    from genlab.errors import DataError
    from genlab.runs.record import read_run_config

    read_run_config(run_dir)  # a missing or corrupt run is reported before torch loads
    if out.exists() and not force:
        raise DataError(f"{out}: exists (pass --force to overwrite)")
    import torch

    from genlab.runs import load_run, make_data
    from genlab.tokens.codes import TokenCodes, save_codes
    from genlab.tokens.metrics import encode_all
    from genlab.tokens.protocol import Tokenizer

    if threads is not None:
        torch.set_num_threads(threads)
    run = load_run(run_dir)
    if not isinstance(run.model, Tokenizer):
        raise ConfigError(f"{run_dir}: model.family = {run.family.name!r} is not a tokenizer "
                          "(encode needs a vqvae, fsq, gumbel-vq or vqgan run)")  # fmt: skip
    try:  # class labels too, when the data set has them
        data = make_data(run.config.data.model_copy(update={"labels": True}))
    except DataError:
        data = make_data(run.config.data)
    codes = TokenCodes(encode_all(run.model, data.train), encode_all(run.model, data.test),
                       run.model.codebook_size, data.train_labels, data.test_labels)  # fmt: skip
    save_codes(out, codes, overwrite=force)
    h, w = codes.grid
    console.print(f"wrote {out}: {codes.train.shape[0]} train and {codes.test.shape[0]} test "
                  f"images as {h}x{w} codes of {codes.codebook_size}")  # fmt: skip
