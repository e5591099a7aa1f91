"""Point clouds from files: ``.npy`` (a 2-D numeric array) or ``.csv``.

``load_points(path)`` returns a float32 tensor of shape ``(N, D)``. Anything a
user could get wrong (missing file, unknown extension, corrupt or non-numeric
content, wrong shape, no rows, NaN or infinite values) raises
:class:`genlab.errors.DataError` with one line that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.data.arrays import check_array_file
from genlab.errors import DataError

__all__ = ["SUPPORTED_EXTENSIONS", "load_points"]

SUPPORTED_EXTENSIONS = (".npy", ".csv")


def load_points(path: str | os.PathLike[str]) -> Tensor:
    """Load an ``(N, D)`` point cloud as float32.

    ``.npy``: a 2-D array of a real numeric (or boolean) dtype; pickled objects
    are refused (``allow_pickle=False``). ``.csv``: comma-separated numbers, one
    point per line, with an optional single header line; blank lines are ignored.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        allowed = ", ".join(SUPPORTED_EXTENSIONS)
        raise DataError(f"{p}: unsupported file extension {p.suffix!r} (expected {allowed})")
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    array = _read_npy(p) if ext == ".npy" else _read_csv(p)
    return _validate(p, array)


def _read_npy(p: Path) -> np.ndarray:
    check_array_file(p)  # a header declaring more than the file holds is not allocated
    try:
        array = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{p}: not a readable .npy file ({first})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{p}: expected a single array in a .npy file")
    kind = array.dtype.kind
    if kind not in "biuf":
        raise DataError(f"{p}: array dtype {array.dtype} is not real numeric")
    return array


def _parse_row(line: str) -> list[float]:
    return [float(field) for field in line.split(",")]


def _read_csv(p: Path) -> np.ndarray:
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file (cannot decode as UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read file ({exc.strerror})") from None
    # (line number counted from 1, content) for every non-blank line
    lines = [(i + 1, s.strip()) for i, s in enumerate(text.splitlines()) if s.strip()]
    if lines:
        try:
            _parse_row(lines[0][1])
        except ValueError:
            lines = lines[1:]  # a non-numeric first line is the header
    if not lines:
        raise DataError(f"{p}: no data rows")
    rows: list[list[float]] = []
    width = None
    for lineno, content in lines:
        try:
            row = _parse_row(content)
        except ValueError:
            raise DataError(f"{p}: line {lineno} is not comma-separated numbers") from None
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise DataError(
                f"{p}: line {lineno} has {len(row)} columns, expected {width} as in the first row"
            )
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def _validate(p: Path, array: np.ndarray) -> Tensor:
    if array.ndim != 2:
        raise DataError(f"{p}: expected a 2-D array (N, D), got shape {tuple(array.shape)}")
    n, d = array.shape
    if n == 0 or d == 0:
        raise DataError(f"{p}: empty point cloud of shape {(n, d)}")
    with np.errstate(over="ignore"):
        points = array.astype(np.float32)  # (N, D); values beyond float32 range become inf
    finite = np.isfinite(points)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        count = int((~finite).sum())
        raise DataError(
            f"{p}: {count} non-finite value(s) (NaN/inf, or beyond float32 range), "
            f"first at data row index {int(bad_rows[0])} (0-based)"
        )
    return torch.from_numpy(np.ascontiguousarray(points))
