""".npy and .npz files checked before numpy reads them: a header is not trusted.

The header of a ``.npy`` array (alone, or each member of a ``.npz`` archive) declares its
shape and dtype, and ``numpy.load`` allocates what it declares before reading the data. A
truncated or crafted file can declare terabytes, which would end in a ``MemoryError`` (or
the kernel's out-of-memory killer) instead of a message. :func:`check_array_file` compares
every declared size with the bytes the file really holds (for an archive member, the size
its zip entry records) and with the memory this process may use
(:func:`genlab.memory.memory_limit`), and raises :class:`genlab.errors.DataError` naming
the file, as it does for a header it cannot parse (numpy would raise errors of several
kinds, some outside its documented ones); an archive it cannot open is left to
``numpy.load`` to report.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from genlab.errors import DataError
from genlab.memory import format_bytes, too_big

__all__ = ["check_array_file"]

_NPY_MAGIC = b"\x93NUMPY"


def _check_member(name: str, kind: str, f: IO[bytes], size: int) -> None:
    """Check one .npy stream of `size` bytes against its header."""
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)  # fmt: skip
        shape, _, dtype = read(f)
        need = math.prod(shape) * dtype.itemsize
    except (ValueError, OSError, EOFError, TypeError, SyntaxError, OverflowError,
            tokenize.TokenError) as err:  # numpy parses the header as Python literals
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{name}: not a readable {kind} file (bad header: {first})") from None
    have = size - f.tell()
    if need > have:
        raise DataError(f"{name}: not a readable {kind} file (its header declares an array "
                        f"of shape {tuple(shape)}, {format_bytes(need)}, but it holds "
                        f"{format_bytes(have)}: truncated or corrupt)")  # fmt: skip
    reason = too_big(f"the array of shape {tuple(shape)}", need)
    if reason is not None:
        raise DataError(f"{name}: {reason}")


def check_array_file(path: Path) -> None:
    """Refuse a .npy or .npz file whose headers declare more than it holds or than fits."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            f.seek(0)
            if magic == _NPY_MAGIC:
                _check_member(str(path), ".npy", f, path.stat().st_size)
            elif magic[:2] == b"PK":
                with zipfile.ZipFile(f) as archive:
                    for info in archive.infolist():
                        with archive.open(info) as member:
                            name = f"{path} ({info.filename})"
                            _check_member(name, ".npz", member, info.file_size)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError,
            NotImplementedError):  # fmt: skip
        return  # unreadable: numpy.load reports it with its own message
