"""Property tests over generated inputs: the cases of `benchmarks/fuzz_inputs.py` (mutated
configs, data files and run directories), drawn by Hypothesis with a fixed seed
(`derandomize`: the same cases on every run) and run in-process for speed.

Every case must end with exit status 0, or 2 with one line of error (1 with one line for a
training run that diverged), without a traceback, and leave an existing run directory as
it was. In-process, a case runs under an address-space limit a few GB above what the test
process already maps and a 60 s alarm, so an input that escaped genlab's checks fails the
test instead of exhausting the machine or hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from fuzz_cases import execute, make_case, train_references  # noqa: E402

EXAMPLES = {"config": 60, "data": 100, "run": 50}
HEADROOM = 4 * 2**30  # bytes of address space a case may add to the test process
TIMEOUT = 60


class Draws:
    """The `Chooser` of the case generators, drawing from Hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(list(options)))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))

    def randbytes(self, n: int) -> bytes:
        return self.data.draw(st.binary(min_size=n, max_size=n))


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """An address-space limit above the current mapping and an alarm, both undone after."""
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (pages * os.sysconf("SC_PAGE_SIZE") + HEADROOM, hard))
    main = threading.current_thread() is threading.main_thread()

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"case ran over {TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, alarm) if main else None
    if main:
        signal.alarm(TIMEOUT)
    try:
        yield
    finally:
        if main:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_references(tmp_path_factory.mktemp("references"))


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_generated_inputs_end_in_success_or_one_line(
    kind: str, references: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tempfile.gettempdir())  # a config without --out writes under runs/

    @settings(max_examples=EXAMPLES[kind], derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def check(data: st.DataObject) -> None:
        case = make_case(Draws(data), kind)
        with tempfile.TemporaryDirectory() as work, guarded():
            result = execute(case, Path(work), references)
        event(result.outcome)  # counts by outcome: pytest --hypothesis-show-statistics
        assert not result.failed, f"{result.outcome}: {case.label}: {result.detail}"

    check()
