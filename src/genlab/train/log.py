"""What `fit` reports while it trains: the `metrics.jsonl` log and a rich progress bar.

`metrics.jsonl` holds one JSON object per log step (the mean loss over the steps since the
previous log line, the learning rate, gradient norm, speed and elapsed time, plus the
validation fields on evaluation steps). A resumed run first drops the lines past its step, so
the file never holds duplicates or lines cut short by a kill.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from torch import Tensor

from genlab.train import checkpoint as ckpt
from genlab.train.config import TrainConfig
from genlab.train.loop import StepInfo


class MetricsLog:
    """Appends one JSON line per log step; on open drops lines past the resumed step.

    It also keeps the log window: the summed loss and the number of steps since the last
    log line, and the time of the last step (`fit` accumulates elapsed time from it).
    With `path` None (the ranks other than 0 of a data-parallel run) nothing is written.
    """

    def __init__(
        self, path: Path | None, step: int, on_log: Callable[[dict], None] | None
    ) -> None:
        self.path, self.on_log = path, on_log
        self.file: TextIO | None = None
        if path is not None:
            _truncate_metrics(path, step)
        self.window_loss: Tensor | float = 0.0
        self.window_steps = 0
        self.last_time = self.window_start = time.perf_counter()
        self.bar_fields: dict[str, str] = {}

    def __enter__(self) -> MetricsLog:
        if self.path is not None:
            self.file = open(self.path, "a")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def log(self, info: StepInfo, elapsed: float, val: dict[str, Any] | None = None) -> float:
        """Write the line of a log step, reset the window and return its mean loss."""
        now = time.perf_counter()
        loss = float(self.window_loss) / self.window_steps
        record = {"step": info.step, "loss": loss, "lr": info.lr,
                  "grad_norm": float(info.grad_norm),
                  "steps_per_s": self.window_steps / max(now - self.window_start, 1e-9),
                  "elapsed": elapsed, **(val or {})}  # fmt: skip
        self._write(record)
        self.window_loss, self.window_steps, self.window_start = 0.0, 0, now
        self.bar_fields = {"loss": f"{loss:.4g}", "rate": f"{record['steps_per_s']:.1f}"}
        if self.on_log is not None:
            self.on_log(record)
        return loss

    def log_validation(self, info: StepInfo, elapsed: float, val: dict[str, Any]) -> None:
        """A line with only the validation fields (an evaluation step that is no log step)."""
        record = {"step": info.step, **val, "elapsed": elapsed}
        self._write(record)
        if self.on_log is not None:
            self.on_log(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as err:  # a failed write() names no file
            raise ckpt.named_os_error(err, self.path) from None


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only complete JSON lines with step <= `step` (no duplicates after a resume)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line + "\n")
    ckpt.atomic_write(path, "".join(kept).encode())


@contextlib.contextmanager
def progress_bar(cfg: TrainConfig, start: int, *, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar (task id 0), or None when disabled or stdout is not a terminal."""
    if not (enabled and cfg.progress and sys.stdout.isatty()):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}  {task.fields[rate]} steps/s"))  # fmt: skip
    with Progress(*columns) as bar:
        bar.add_task("train", total=cfg.steps, completed=start, loss="-", rate="-")
        yield bar
