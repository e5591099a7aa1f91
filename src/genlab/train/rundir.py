"""Paths of a run directory stay inside it: the checks genlab makes before it reads or writes.

A run directory may come from elsewhere (copied from a cluster, downloaded, unpacked from an
archive). Everything genlab reads or writes in it (`config.json`, `metrics.jsonl`,
`eval.json`, `checkpoints/` and every file below it) must be a regular file or directory of
that run directory: a symbolic link resolving outside it would make genlab read or
overwrite a file elsewhere, and a FIFO or device would hang a read or a write. Links that
stay inside the run directory are harmless and allowed. (The training data a config names
may live anywhere: reading the data a user trained on is not a hole.)

This module imports no torch, so the command line checks a run directory before loading a
model.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from genlab.errors import DataError

__all__ = ["check_run_dir", "inside", "refuse_outside"]


def _resolved(path: Path) -> Path | None:
    """`path` with every link resolved; None for a loop of links."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # RuntimeError: a symlink loop (Python < 3.13)
        return None


def inside(path: Path, base: Path) -> bool:
    """Whether `path`, with every symbolic link resolved, lies in `base` (or is `base`)."""
    resolved, root = _resolved(path), _resolved(base)
    return resolved is not None and root is not None and resolved.is_relative_to(root)


def refuse_outside(path: Path, base: Path) -> None:
    """A DataError naming `path` if it resolves outside `base` (a link leading elsewhere)."""
    if not inside(path, base):
        target = _resolved(path) or "a loop of links"
        raise DataError(f"{path}: resolves to {target}, outside the run directory {base}; "
                        "refused (replace the link by the file itself)")  # fmt: skip


def check_run_dir(run_dir: Path | str) -> None:
    """Refuse a run directory holding a link that leads outside it or a special file.

    Walks the whole directory without following links (run directories are small: a config,
    a log and a few checkpoints). Raises DataError naming the first offending path.
    """
    root = Path(run_dir)
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                refuse_outside(path, root)
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise DataError(f"{path}: not a regular file (a FIFO, socket or device in a "
                                "run directory would hang a read or a write); refused")  # fmt: skip
