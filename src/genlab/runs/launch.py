"""`genlab train` on several processes: torchrun's launcher starts them, each is one rank.

`launch` runs `python -m genlab train ...` in N worker processes through torchrun's elastic
agent (`torch.distributed.run`, a standalone rendezvous on this machine) and turns a failed
job into one line naming the rank. A worker (`train_worker`) joins the process group
(`genlab.train.distributed.process_group`), resumes from the last checkpoint when torchrun
restarted it (`--max-restarts`), and trains with `train_run`. `torchrun --nproc-per-node N
-m genlab train CONFIG` starts the same workers directly (and on several machines).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import GenlabError, TrainingDiverged

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from genlab.config import RunConfig
    from genlab.train import TrainResult

__all__ = ["check_launch", "launch", "train_worker", "worker_argv", "worker_threads"]


def worker_threads(nproc: int, threads: int | None) -> int:
    """Intra-op threads per worker: `threads`, else the cores shared out (at least 1)."""
    return threads if threads is not None else max(1, (os.cpu_count() or 1) // nproc)


def worker_argv(
    config: Path, sets: Sequence[str], run_dir: Path, resume: bool, threads: int
) -> list[str]:
    """The `genlab` arguments every worker runs (`python -m genlab <these>`)."""
    argv = ["train", str(config), "--out", str(run_dir), "--threads", str(threads)]
    for item in sets:
        argv += ["--set", item]
    return argv + (["--resume"] if resume else [])


def check_launch(cfg: RunConfig, run_dir: Path, resume: bool, nproc: int) -> None:
    """Refuse, before any worker starts, what the workers would refuse: checkpoints without
    --resume, or a checkpoint whose shards `nproc` processes cannot share (ConfigError)."""
    from genlab.train.checkpoint import read_trainer_state
    from genlab.train.distributed import World, resolve_shards
    from genlab.train.fitting import resume_point

    last = resume_point(run_dir, resume)
    saved = None if last is None else read_trainer_state(last).get("train_config", {})
    resolve_shards(cfg.train, saved, World(0, nproc))


def launch(argv: list[str], nproc: int, max_restarts: int, threads: int) -> tuple[int, str]:
    """Run `python -m genlab <argv>` on `nproc` local processes through torchrun's agent,
    restarting all of them up to `max_restarts` times after a failure.

    Returns (exit status, message): (0, "") on success; (2, "") when rank 0 reported bad
    input (it printed its own line); otherwise the message names the rank that failed first
    (a signal such as SIGKILL before an exit status, SIGTERM from torchrun last) and the
    status is 1 (2 if that rank reported bad input).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the workers
    # a fresh store for every attempt: keys of a failed attempt must not reach a restarted one
    os.environ["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we report
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}",
                       f"--max-restarts={max_restarts}", "--module", "genlab", *argv])  # fmt: skip
    try:
        run(args)
    except ChildFailedError as err:
        return _failure(err, max_restarts)
    return 0, ""


def _failure(err: ChildFailedError, max_restarts: int) -> tuple[int, str]:
    """(exit status, one line) of a failed job."""
    failures = err.failures
    if 0 in failures and failures[0].exitcode == 2:
        return 2, ""  # bad input: rank 0 printed its line
    rank, first = min(failures.items(), key=_root_cause)
    if first.exitcode < 0:
        what = f"was killed by {first.signal_name()}"
    else:
        what = f"exited with status {first.exitcode}"
    message = first.message
    if isinstance(message, dict):
        message = message.get("message", "")
    detail = f" ({message})" if first.exitcode >= 0 and message else ""
    tries = f" after {max_restarts} restart(s)" if max_restarts else ""
    status = 2 if first.exitcode == 2 else 1
    return status, f"error: training stopped{tries}: rank {rank} (pid {first.pid}) {what}{detail}"


def _root_cause(item: tuple[int, Any]) -> tuple[bool, bool, int, int]:
    """Sort key of (rank, failure): killed by a signal first, then exit statuses, and last
    SIGTERM, which torchrun sends the other workers when one failed; then by time."""
    rank, failure = item
    return (failure.exitcode == -signal.SIGTERM, failure.exitcode >= 0, failure.timestamp, rank)


def train_worker(
    cfg: RunConfig, run_dir: Path, *, resume: bool, threads: int | None
) -> TrainResult | None:
    """Train as one rank of the job torchrun started; the result on rank 0, None elsewhere.

    Resumes when torchrun restarted the job. Bad input and divergence: rank 0 raises (the
    command line prints one line), the other ranks exit with the same status silently. Any
    other error (e.g. a lost peer) is one line naming the rank, exit status 1. Every rank
    writes its error, with the traceback, to the error file torchrun reports."""
    import torch

    from genlab.runs.run import train_run
    from genlab.train.distributed import process_group, restart_count

    if threads is not None:
        torch.set_num_threads(threads)
    rank = int(os.environ["RANK"])
    try:
        with process_group() as (world, device):
            result, _ = train_run(cfg, run_dir, resume=resume or restart_count() > 0,
                                  device=device)  # fmt: skip
    except GenlabError as err:
        _record(err)
        if rank == 0:
            raise
        raise SystemExit(1 if isinstance(err, TrainingDiverged) else 2) from None
    except Exception as err:
        _record(err)
        first = (str(err).strip().splitlines() or [""])[0]
        print(f"[rank {rank}] training stopped: {type(err).__name__}: {first}", file=sys.stderr)
        raise SystemExit(1) from None
    return result if world.is_main else None


def _record(err: BaseException) -> None:
    """Write `err` to the error file torchrun reads (when it gave one). SIGTERM, which
    torchrun sends the other workers once one failed, waits until the file is complete:
    torchrun cannot read a file cut short."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        ErrorHandler().record_exception(err)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
