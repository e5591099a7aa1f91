"""One progress bar over jobs in worker processes: the weighted fraction and the log lines."""

from __future__ import annotations

import io
import queue

import pytest
from rich.console import Console

from genlab.progress import JobBoard, JobReporter


def test_fraction_weights_each_job_by_its_cost() -> None:
    q: queue.Queue = queue.Queue()
    board = JobBoard({"a": 1.0, "b": 3.0}, Console(file=io.StringIO()))
    JobReporter(q, "a").report("train 5/10", 0.5)
    JobReporter(q, "b").steps(100, share=0.8)({"step": 25})  # 25/100 of the training share
    board.update(q)
    assert board.state["b"] == ("train 25/100", 0.2)
    assert board.fraction == (1.0 * 0.5 + 3.0 * 0.2) / 4.0
    board.done("a")
    assert board.fraction == (1.0 + 3.0 * 0.2) / 4.0
    assert board.running() == "b (train 25/100)"


def test_a_log_shows_progress_lines_until_every_job_is_done() -> None:
    out = io.StringIO()
    q: queue.Queue = queue.Queue()
    board = JobBoard({"a": 1.0}, Console(file=out, width=200), every=0.0)
    calls = iter([[], [], ["a"]])
    JobReporter(q, "a").report("sampling", 0.8)
    board.run(q, lambda: next(calls))
    lines = out.getvalue().splitlines()
    assert lines and lines[0].startswith("demo 80%") and "running: a (sampling)" in lines[0]
    assert board.fraction == 1.0


def test_torch_threads_sets_and_restores_the_thread_count() -> None:
    import torch

    from genlab.progress import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("the job failed")  # restored on every exit path
    assert torch.get_num_threads() == before
