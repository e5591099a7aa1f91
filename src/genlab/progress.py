"""Progress of several jobs running in worker processes, shown as one overall bar.

Workers report `(job, phase, fraction done)` through a queue (`JobReporter`); the main
process (`JobBoard`) turns the reports into one bar weighted by each job's expected cost,
with what is running and the time left. On a terminal it is a live rich bar; in a log (no
terminal) a line every `every` seconds, so a long run never looks stuck.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

__all__ = ["JobBoard", "JobReporter", "torch_threads"]


@dataclass
class JobReporter:
    """The worker side: `report(phase, fraction)` puts one progress report on `queue`."""

    queue: Any  # a multiprocessing queue (or any object with put)
    job: str

    def report(self, phase: str, fraction: float) -> None:
        self.queue.put((self.job, phase, min(max(fraction, 0.0), 1.0)))

    def steps(self, total: int, share: float = 1.0, start: float = 0.0) -> Callable[[dict], None]:
        """An `on_log` callback of `genlab.train.fit`: training step s of `total` counts as
        `start + share * s / total` of the job."""

        def on_log(record: dict[str, Any]) -> None:
            step = int(record.get("step", 0))
            self.report(f"train {step}/{total}", start + share * step / max(total, 1))

        return on_log


@dataclass
class JobBoard:
    """The main side: jobs by name with their expected cost (any unit), one overall bar."""

    weights: dict[str, float]
    console: Console
    every: float = 15.0
    state: dict[str, tuple[str, float]] = field(default_factory=dict)

    def update(self, queue: Any) -> None:
        """Take every report waiting on `queue` (waits up to 0.2 s for the first)."""
        timeout = 0.2
        while True:
            try:
                job, phase, fraction = queue.get(timeout=timeout)
            except Empty:
                return
            self.state[job] = (phase, fraction)
            timeout = 0.0

    def done(self, job: str) -> None:
        self.state[job] = ("done", 1.0)

    @property
    def fraction(self) -> float:
        total = sum(self.weights.values())
        got = sum(self.weights[j] * f for j, (_, f) in self.state.items() if j in self.weights)
        return got / total if total else 1.0

    def running(self) -> str:
        active = [f"{j} ({p})" for j, (p, f) in self.state.items() if p != "done"]
        return ", ".join(active) or "starting"

    def run(self, queue: Any, finished: Callable[[], Sequence[str]]) -> None:
        """Show progress until `finished()` names every job (it returns the names done)."""
        if self.console.is_terminal:
            self._live(queue, finished)
        else:
            self._log(queue, finished)

    def _poll(self, queue: Any, finished: Callable[[], Sequence[str]]) -> bool:
        self.update(queue)
        for job in finished():
            self.done(job)
        return all(self.state.get(j, ("", 0.0))[0] == "done" for j in self.weights)

    def _live(self, queue: Any, finished: Callable[[], Sequence[str]]) -> None:
        columns = (TextColumn("demo"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[running]}"))  # fmt: skip
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task("demo", total=1.0, running="starting")
            while not self._poll(queue, finished):
                bar.update(task, completed=self.fraction, running=self.running())

    def _log(self, queue: Any, finished: Callable[[], Sequence[str]]) -> None:
        start = last = time.perf_counter()
        while not self._poll(queue, finished):
            now = time.perf_counter()
            if now - last >= self.every:
                last = now
                frac = self.fraction
                left = (now - start) * (1 - frac) / frac if frac > 0.02 else None
                eta = "" if left is None else ", {}:{:02d} left".format(*divmod(int(left), 60))
                self.console.print(f"demo {100 * frac:.0f}%{eta}; running: {self.running()}",
                                   markup=False, highlight=False)  # fmt: skip


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body on `n` torch intra-op threads, then restore the previous number (a job of
    a worker pool: intra-op parallelism only slows small networks down, and the pool's
    workers x threads must not exceed the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
