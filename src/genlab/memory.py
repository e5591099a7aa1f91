"""How much memory this process may use, and sizes in words (imports no torch).

`memory_limit()` is the smallest of the machine's physical memory, the memory limit of the
process's cgroup (a container or a batch job's allocation) and its address-space and data
rlimits (`ulimit -v`, `ulimit -d`). Anything genlab would allocate is checked against it
before allocating (`genlab.runs.budget`, image folders in `genlab.data.images`), so that a
config asking for terabytes fails with one line naming the cause, not in the allocator.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["format_bytes", "memory_limit", "too_big"]

_CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _physical() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup() -> int | None:
    for name in _CGROUP_FILES:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def _rlimits() -> list[int]:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return []
    limits = []
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft = resource.getrlimit(kind)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    return limits


def memory_limit() -> int:
    """Bytes this process may allocate at most (see the module docstring)."""
    limits = [v for v in (_physical(), _cgroup(), *_rlimits()) if v is not None and v > 0]
    return min(limits) if limits else 2**63


def format_bytes(n: float) -> str:
    """A byte count in words: "512 B", "3.2 GB", "1.5e+03 PB"."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def too_big(what: str, need: float) -> str | None:
    """None if `need` bytes fit in `memory_limit()`, else the end of an error message:
    "<what> needs about X, more than the Y this process may use"."""
    limit = memory_limit()
    if need <= limit:
        return None
    return (f"{what} needs about {format_bytes(need)}, more than the {format_bytes(limit)} of "
            "memory this process may use")  # fmt: skip
