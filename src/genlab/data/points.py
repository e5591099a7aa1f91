"""Point clouds and tables from files: ``.npy`` (a 2-D numeric array) or ``.csv``.

``load_table(path)`` returns a `Table`: the values as float64 exactly as written (a CSV's
decimals parse to the nearest double; a float32 array is read through the shortest decimal
that round-trips, so ``14.23`` stays ``14.23``) and the header names of a CSV that has one.
``load_points(path)`` is the float32 tensor of the same values.

Anything a user could get wrong raises :class:`genlab.errors.DataError` with one line that
names the file and, for a bad cell, where it is: ``line 7 (row index 5), column 'bmi'
(index 2): empty cell``. CSV lines count from 1 as an editor shows them; row and column
indices count from 0 as in numpy. Refused: a missing file, an unknown extension, corrupt or
pickled ``.npy`` content, a wrong shape, no rows, empty cells, text in a numeric column,
ragged rows, NaN or infinite values and values beyond float32's range.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.data.arrays import check_array_file
from genlab.errors import DataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Table",
    "column_label",
    "load_points",
    "load_table",
    "write_csv",
]

SUPPORTED_EXTENSIONS = (".npy", ".csv")
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Table:
    """A numeric table read from `path`: values (N, D) float64; `header` the column names of
    a CSV with a header line (None otherwise); `lines[i]` the file line of row i (CSV)."""

    path: Path
    values: np.ndarray
    header: tuple[str, ...] | None = None
    lines: tuple[int, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """A name per column: the header's, else ``col0``, ``col1``, ..."""
        return self.header or tuple(f"col{j}" for j in range(self.values.shape[1]))

    def column(self, j: int) -> str:
        """How messages name column j: ``column 'bmi' (index 2)`` or ``column index 2``."""
        return column_label(self.header, j)

    def row(self, i: int) -> str:
        """How messages name row i: ``line 7 (row index 5)`` (CSV) or ``row index 5``."""
        return f"line {self.lines[i]} (row index {i})" if self.lines else f"row index {i}"


def column_label(header: tuple[str, ...] | None, j: int) -> str:
    """``column 'name' (index j)`` with a header, ``column index j`` without."""
    return f"column {header[j]!r} (index {j})" if header else f"column index {j}"


def load_table(path: str | os.PathLike[str]) -> Table:
    """Read and check a ``.npy`` or ``.csv`` table (module docstring)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        allowed = ", ".join(SUPPORTED_EXTENSIONS)
        raise DataError(f"{p}: unsupported file extension {p.suffix!r} (expected {allowed})")
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    table = _read_npy(p) if ext == ".npy" else _read_csv(p)
    _check_values(table)
    return table


def load_points(path: str | os.PathLike[str]) -> Tensor:
    """The ``(N, D)`` float32 point cloud of `load_table(path)`."""
    return torch.from_numpy(load_table(path).values.astype(np.float32))


def _read_npy(p: Path) -> Table:
    check_array_file(p)  # a header declaring more than the file holds is not allocated
    try:
        array = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{p}: not a readable .npy file ({first})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{p}: expected a single array in a .npy file")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{p}: array dtype {array.dtype} is not real numeric")
    if array.ndim != 2:
        raise DataError(f"{p}: expected a 2-D array (N, D), got shape {tuple(array.shape)}")
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        # the shortest decimal of each value: a float32 14.23 reads as 14.23, not 14.229999
        with np.errstate(invalid="ignore"):
            array = array.astype(str).astype(np.float64)
    return Table(p, np.ascontiguousarray(array, dtype=np.float64))


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(p: Path) -> Table:
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file (cannot decode as UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read file ({exc.strerror})") from None
    try:
        records = list(csv.reader(text.splitlines(), skipinitialspace=True))
    except csv.Error as exc:
        raise DataError(f"{p}: not a readable CSV file ({exc})") from None
    # (line number counted from 1, fields) of every non-blank line
    rows = [
        (i + 1, [f.strip() for f in r]) for i, r in enumerate(records) if any(f.strip() for f in r)
    ]
    header = _header(p, rows[0]) if rows else None
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise DataError(f"{p}: no data rows")
    width = len(header) if header is not None else len(rows[0][1])
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, (lineno, fields) in enumerate(rows):
        where = f"{p}: line {lineno} (row index {i})"
        if len(fields) != width:
            first = "the header" if header is not None else f"line {rows[0][0]}"
            what = (f"{column_label(header, len(fields))} is missing" if len(fields) < width
                    else f"extra values from column index {width} on")  # fmt: skip
            raise DataError(f"{where} has {len(fields)} columns, expected {width} as in {first}: "
                            f"{what}")  # fmt: skip
        for j, field in enumerate(fields):
            values[i, j] = _cell(field, f"{where}, {column_label(header, j)}")
    return Table(p, values, header, tuple(lineno for lineno, _ in rows))


def _header(p: Path, first: tuple[int, list[str]]) -> tuple[str, ...] | None:
    """The names of a header line (no field a number), None for a data line (all numbers)."""
    lineno, fields = first
    numeric = [_is_number(f) for f in fields]
    if all(numeric):
        return None
    if any(numeric):
        raise DataError(f"{p}: line {lineno} mixes names and numbers: a header line names "
                        "every column, a data line holds only numbers")  # fmt: skip
    if len(set(fields)) != len(fields):
        dup = next(f for f in fields if fields.count(f) > 1)
        raise DataError(f"{p}: line {lineno}: the header names two columns {dup!r}")
    return tuple(fields)


def _cell(field: str, where: str) -> float:
    if not field:
        raise DataError(f"{where}: empty cell")
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{where}: {field!r} is not a number") from None
    if math.isnan(value):
        raise DataError(f"{where}: NaN (fill or drop the missing value)")
    return value


def _check_values(table: Table) -> None:
    """Non-empty, finite and within float32's range, else the first bad cell is named."""
    values, p = table.values, table.path
    n, d = values.shape
    if n == 0 or d == 0:
        raise DataError(f"{p}: empty table of shape {(n, d)}")
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        v = values[i, j]
        what = "NaN" if np.isnan(v) else "infinite" if np.isinf(v) else f"{v:g} is beyond " \
            "float32's range"  # fmt: skip
        raise DataError(f"{p}: {table.row(i)}, {table.column(j)}: {what} "
                        f"({int(bad.sum())} bad value(s) in all)")  # fmt: skip


def write_csv(
    path: str | os.PathLike[str],
    values: np.ndarray,
    header: Sequence[str] | None = None,
    decimals: Sequence[int | None] | None = None,
) -> None:
    """Write rows (N, D) as CSV, with a header line of `header` names when given; column j
    with `decimals[j]` = k is written with k decimals (a grid column as the file held it),
    the others with 9 significant digits (float32's round trip)."""
    d = values.shape[1]
    places = list(decimals) if decimals is not None else [None] * d
    fmts = ["{:.9g}" if k is None else f"{{:.{k}f}}" for k in places]
    lines = [",".join(_quote(n) for n in header)] if header is not None else []
    for row in values.tolist():
        lines.append(",".join(f.format(v) for f, v in zip(fmts, row, strict=True)))
    Path(path).write_text("\n".join(lines) + "\n")


def _quote(name: str) -> str:
    """A header name as one CSV field (quoted when it holds a comma or a quote)."""
    return '"' + name.replace('"', '""') + '"' if ("," in name or '"' in name) else name
