"""The lock of a run directory: one training process at a time.

`run_lock(run_dir)` holds `run_dir/train.lock` while a run trains. The file records the
holder (pid, host, start time, and on Linux the boot id and the start tick of the process,
which tell a live process from a reused pid) and carries a kernel lock (`flock`) for as
long as the holder's file descriptor is open.

A second trainer on the same directory fails at once with one line naming the holder. A
lock whose holder is gone is stale and is taken over (with a warning naming the old holder):

- same host: the kernel lock is free (the kernel drops it when a process dies, even by
  SIGKILL) and the recorded process no longer runs (its pid is gone, or belongs to another
  process now: the start tick or the boot id differ);
- another host: genlab cannot see that host's processes, and a shared file system need
  not carry kernel locks between hosts, so the lock is refused, naming the holder and the
  file to delete if that job is gone.

The lock is released on every exit path: a normal return, an exception, Ctrl-C, and SIGTERM
(while the lock is held SIGTERM raises `SystemExit(143)` in the main thread, so `finally`
blocks run); after SIGKILL or a power cut the next trainer finds the lock stale.

Under torchrun every rank runs the same command: only the process with `RANK` 0 (the
default when `RANK` is unset) takes the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the holder record alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "Holder", "RunLock", "rank", "run_lock"]

LOCK_FILE = "train.lock"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at 3
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Holder:
    """The process that holds (or held) a run directory's lock."""

    pid: int
    host: str
    started: float  # seconds since the epoch
    boot_id: str = ""
    ticks: int | None = None  # the process's start tick (Linux), to tell a reused pid

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), time.time(), _boot_id(), _start_ticks(pid))

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder recorded in a lock file; None if the record is empty or unreadable."""
        try:
            values: Any = json.loads(data)
            holder = cls(int(values["pid"]), str(values["host"]), float(values["started"]),
                         str(values.get("boot_id", "")), values.get("ticks"))  # fmt: skip
            holder.describe()  # a time that cannot be shown is no record either
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, OverflowError, OSError):
            return None
        return holder if holder.pid > 0 else None

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.started).astimezone().isoformat(timespec="seconds")
        return f"pid {self.pid} on {self.host}, started {when}"

    def running(self) -> bool:
        """Whether the holder still runs (asked of a holder on this host)."""
        if self.boot_id and self.boot_id != _boot_id():
            return False  # the machine rebooted since
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        except (OverflowError, ValueError):
            return False  # no such pid can exist
        now = _start_ticks(self.pid)
        return self.ticks is None or now is None or now == self.ticks


def rank() -> int:
    """This process's rank under torchrun (`RANK`; 0 when unset)."""
    value = os.environ.get("RANK", "0")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"RANK: must be an integer (got {value!r})") from None


def _kernel_lock(fd: int) -> bool:
    """Take the kernel lock of `fd` without waiting; False if another process holds it
    (True also where the file system has no such locks: the holder record decides)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # no flock on this file system
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False


def _read(fd: int) -> Holder | None:
    return Holder.parse(os.pread(fd, 4096, 0))


@dataclass
class RunLock:
    """A held lock: its file, its open descriptor and the stale holder it replaced."""

    path: Path
    fd: int
    previous: Holder | None = None

    def release(self) -> None:
        """Delete the lock file (if it is still ours) and drop the kernel lock."""
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()
        finally:
            os.close(self.fd)


def _busy(run_dir: Path, holder: Holder | None) -> ConfigError:
    who = holder.describe() if holder is not None else "a process that is starting"
    return ConfigError(f"{run_dir} is in use: another training run holds its lock ({who}); "
                       "wait for it to finish or train into another directory")  # fmt: skip


def _open_locked(path: Path, run_dir: Path) -> int:
    """A descriptor of the lock file carrying its kernel lock (retrying if the file was
    replaced between opening and locking it)."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        if not _kernel_lock(fd):
            holder = _read(fd)
            os.close(fd)
            raise _busy(run_dir, holder)
        if _same_file(fd, path):
            return fd
        os.close(fd)
    raise ConfigError(f"{path}: replaced again and again while being locked; is another "
                      "trainer starting in this directory?")  # fmt: skip


def _record(fd: int, path: Path, holder: Holder) -> None:
    """Write the holder into the lock file (a failed write names the file)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        os.fsync(fd)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def acquire(run_dir: Path) -> RunLock:
    """Lock `run_dir` (created if missing) for this process; see the module docstring."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = _open_locked(path, run_dir)
    try:
        previous = _read(fd)
        me = Holder.me()
        if previous is not None and previous.host != me.host:
            raise ConfigError(f"{run_dir} is locked by {previous.describe()}; genlab cannot "
                              "see processes on another host: if that run is gone, delete "
                              f"{path}")  # fmt: skip
        if previous is not None and previous.pid != me.pid and previous.running():
            raise _busy(run_dir, previous)
        _record(fd, path, me)
    except BaseException:
        os.close(fd)
        raise
    if previous is not None:
        warnings.warn(f"{path}: took over the stale lock of {previous.describe()} "
                      "(no longer running)", stacklevel=3)  # fmt: skip
    return RunLock(path, fd, previous)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise SystemExit in the main thread; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGTERM, _raise_exit)
    return lambda: signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def run_lock(run_dir: Path | str) -> Iterator[RunLock | None]:
    """Hold the lock of `run_dir` for the body (rank 0 only; other ranks get None).

    A directory this call creates is removed again if it is left empty (a run that failed
    before writing anything leaves no trace)."""
    run_dir = Path(run_dir)
    if rank() != 0:
        yield None
        return
    created = not run_dir.exists()
    lock = acquire(run_dir)
    undo = _exit_on_sigterm()
    try:
        yield lock
    finally:
        undo()
        lock.release()
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
