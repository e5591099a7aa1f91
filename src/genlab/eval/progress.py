"""A progress bar for long evaluations: silent for the first seconds, then a rich bar with
the work done, the elapsed time and an ETA, on stderr (stdout keeps the tables)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

__all__ = ["PROGRESS_AFTER", "DelayedProgress"]

PROGRESS_AFTER = 3.0  # seconds of work before the bar appears


class DelayedProgress:
    """Counts `total` units of work; once `after` seconds have passed (and `enabled`), shows
    a rich progress bar with an ETA for the rest. A context manager; `advance(k)` after
    each piece of work."""

    def __init__(
        self, total: int, label: str, *, after: float = PROGRESS_AFTER, enabled: bool = True
    ) -> None:
        self.total, self.label, self.after, self.enabled = total, label, after, enabled
        self.done = 0
        self.start = time.perf_counter()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> DelayedProgress:
        self.start = time.perf_counter()
        return self

    def advance(self, k: int) -> None:
        """Book k units of work; start the bar when the evaluation has run long enough."""
        self.done += k
        if self.bar is None and self.enabled and self.done < self.total:
            if time.perf_counter() - self.start >= self.after:
                self._show()
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                   TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn())  # fmt: skip
        self.bar = Progress(*columns, console=Console(stderr=True))
        self.bar.start()
        # the work done so far is the starting point: the ETA comes from the rate after it
        self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()
