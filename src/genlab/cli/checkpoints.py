"""Choosing a run's checkpoint on the command line, and the one-line hint when a
checkpoint file is broken (which intact checkpoint to load or to resume from)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from genlab.errors import DataError

__all__ = ["CheckpointOpt", "fallback_hint"]


@contextlib.contextmanager
def fallback_hint(run_dir: Path, *, resume: bool = False) -> Iterator[None]:
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
