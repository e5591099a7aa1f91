"""Fuzzed inputs: every generated case ends with exit status 0 or 2 (or 1, the documented
status of a training run that diverged), at most one line of error, no traceback, no hang
over --timeout seconds, and an existing run directory unchanged (hashed before and after;
only a successful `genlab eval` may write its eval.json).

Cases (`fuzz_cases.py`): mutated TOML configs (wrong types, out-of-range numbers, unknown
keys and sections, absurd sizes, damaged TOML text) trained with small caps; points and
image files (.npy, .npz, .csv, PNG folders, IDX, IDX.gz) truncated, garbage, bit-flipped,
with enormous headers, NaN/inf or odd shapes and dtypes; trained run directories with
missing, damaged, linked, swapped or mangled files, sampled and evaluated.

Run: .venv/bin/python benchmarks/fuzz_inputs.py [--cases 2000] [--seed 0] [--jobs 2]

How a case runs: in a child process forked from this one once genlab, torch and the
reference runs are loaded. The child writes the case's files, calls `genlab.cli.main`
in-process and reports how it ended; the parent kills a child after --timeout seconds (a
hang) and counts one that died by a signal as a crash. Forking gives every case a process
of its own (no global state carries over from one case to the next; a hang or a crash is
caught, not suffered) for a fraction of the cost of starting Python and importing torch per
case. Children run under an address-space limit (--memory GB), so a case that escaped
genlab's memory estimates fails in the allocator instead of exhausting a shared machine;
genlab's estimates read that limit as this process's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_cases import Case, Result, execute, make_case, train_references  # noqa: E402

KINDS = ("config", "data", "run")


def _child(case: Case, work: Path, references: dict[str, Path], memory: int) -> None:
    """Body of a forked child: run the case, write result.json, leave without cleanup."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        os.chdir(work)
        result = execute(case, work, references)
    except BaseException:  # a failure of the harness itself, reported as such
        result = Result("harness", traceback.format_exc()[-400:])
    (work / "result.json").write_text(json.dumps({**asdict(result), "label": case.label}))
    os._exit(0)


def _start(case: Case, work: Path, references: dict[str, Path], memory: int) -> int:
    work.mkdir(parents=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(case, work, references, memory)
    return pid


def _finish(work: Path, label: str, status: int, timed_out: bool) -> dict:
    if timed_out:
        return {"outcome": "timeout", "detail": "", "label": label}
    path = work / "result.json"
    if os.WIFSIGNALED(status) or not path.is_file():
        return {"outcome": "crash", "detail": f"wait status {status}", "label": label}
    return json.loads(path.read_text())


def run_all(cases: list[Case], references: dict[str, Path], root: Path, args) -> list[dict]:
    """Run every case in forked children, `args.jobs` at a time; their results in order."""
    results: list[dict | None] = [None] * len(cases)
    running: dict[int, tuple[int, float, bool]] = {}  # pid -> (index, start, killed)
    pending = list(range(len(cases)))
    memory = int(args.memory * 2**30)
    while pending or running:
        while pending and len(running) < args.jobs:
            i = pending.pop(0)
            running[_start(cases[i], root / f"case-{i:05d}", references, memory)] = \
                (i, time.monotonic(), False)  # fmt: skip
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for other, (i, start, killed) in list(running.items()):
                if not killed and time.monotonic() - start > args.timeout:
                    os.kill(other, signal.SIGKILL)
                    running[other] = (i, start, True)
            time.sleep(0.01)
            continue
        i, _, killed = running.pop(pid)
        work = root / f"case-{i:05d}"
        results[i] = _finish(work, cases[i].label, status, killed)
        if results[i]["outcome"] in ("ok", "refused", "diverged"):
            shutil.rmtree(work, ignore_errors=True)
        if (i + 1) % 100 == 0:
            print(f"... {sum(r is not None for r in results)} cases done", flush=True)
    return [r for r in results if r is not None]


def report(cases: list[Case], results: list[dict], seconds: float) -> int:
    """Print the counts by outcome (overall and per kind) and every failure; 1 if any."""
    total = Counter(r["outcome"] for r in results)
    print(f"{len(results)} cases in {seconds:.0f} s (seed {ARGS.seed}):")
    print("  by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    for kind in KINDS:
        counts = Counter(
            r["outcome"] for c, r in zip(cases, results, strict=True) if c.kind == kind
        )
        print(f"  {kind:>6}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    failures = [r for r in results if r["outcome"] not in ("ok", "refused", "diverged")]
    for r in failures:
        print(f"FAIL {r['outcome']}: {r['label']}\n     {r['detail']}")
    print(f"failures: {len(failures)}")
    return 1 if failures else 0


def main() -> int:
    torch.set_num_threads(1)
    rng = random.Random(ARGS.seed)
    kinds = ARGS.kind or [None]
    cases = [make_case(rng, kinds[i % len(kinds)]) for i in range(ARGS.cases)]
    root = Path(tempfile.mkdtemp(prefix="genlab-fuzz-"))
    print(f"work directory {root}; training the reference runs", flush=True)
    references = train_references(root / "references")
    started = time.monotonic()
    results = run_all(cases, references, root, ARGS)
    status = report(cases, results, time.monotonic() - started)
    if status == 0 and not ARGS.keep:
        shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory", type=float, default=6.0, help="GB of address space per case")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="only cases of this kind (repeatable; default: a random mix)",
    )
    ARGS = parser.parse_args()
    sys.exit(main())
