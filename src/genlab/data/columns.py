"""Per-column statistics of a table, fitted on its training rows (numpy, float64).

`fit_columns` returns a `ColumnStats`: for each column a grid (`step` > 0 when the values
were recorded on one), whether it is log-transformed, and the shift and scale of
y = (g(x) - shift) / scale with g = log on log columns, identity elsewhere:

- scaling "standard": the mean and standard deviation of g(x) over the training rows;
- "robust": the median and the interquartile range / 1.349 (the standard deviation of a
  Gaussian with that IQR; Huber & Ronchetti, *Robust Statistics*, 2009, sec. 5.3);
- "none": shift 0, scale 1;
- "whiten": "standard", then y = W z with W = L^-1 for the Cholesky factor L L^T of the
  correlation matrix of the standardised training rows z, so the training rows have
  identity covariance and a model's N(0, I) base is the maximum-likelihood Gaussian
  (ln|det W| = -sum_j ln L_jj; the decorrelation of Kessy et al. 2018, *Optimal whitening
  and decorrelation*, with the Cholesky choice of W).

Grid detection (`grid_step`). A column whose values are all multiples of 10^-k for some
k <= `MAX_DECIMALS` (integer counts and flags: k = 0; values written with a fixed number of
decimals) lies on the grid origin + step * Z, with step = 10^-k times the greatest common
divisor of the integer gaps between its sorted distinct values (exact integer arithmetic).
A continuous density of such values earns unbounded likelihood by putting spikes on the
grid; `genlab.transform.ColumnTransform` dequantises them uniformly over one step instead.

The fitted statistics are what a run stores (`genlab.transform.ColumnTransform` buffers),
`describe` is the one-line report of what was done to which column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from genlab.data.points import Table
from genlab.errors import ConfigError, DataError

__all__ = ["MAX_DECIMALS", "SCALINGS", "ColumnStats", "decimals", "describe_record",
           "fit_columns", "grid_step"]  # fmt: skip

Scaling = Literal["standard", "robust", "none"]
SCALINGS: tuple[str, ...] = ("standard", "robust", "none", "whiten")
MAX_DECIMALS = 6  # finer decimals count as continuous
IQR_TO_STD = 1.3489795003921634  # the IQR of N(0, 1): 2 * Phi^-1(0.75)
EXACT = 2.0**53  # integers above this are not exact in float64


@dataclass(frozen=True)
class ColumnStats:
    """Fitted per-column statistics, each (D,) float64 (`log` bool); `step` 0 = continuous."""

    names: tuple[str, ...]
    header: bool  # the names came from the file's header
    scaling: str
    shift: np.ndarray
    scale: np.ndarray
    log: np.ndarray
    step: np.ndarray
    origin: np.ndarray
    mix: np.ndarray | None = None  # "whiten": W (D, D) lower triangular, y = W z

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def is_identity(self) -> bool:
        """Whether the transform changes nothing (no scaling, log or grid column)."""
        return (self.scaling == "none" and not self.log.any() and not (self.step > 0).any()
                and self.mix is None)  # fmt: skip

    def describe(self) -> str:
        """One line: the scaling, the log columns and the dequantised grid columns."""
        return describe_record(self.record())

    def record(self) -> dict[str, Any]:
        """What a run's config.json records (the numbers themselves are model buffers)."""
        pairs = list(zip(self.names, self.log, self.step, strict=True))
        return {"names": list(self.names), "header": self.header, "scaling": self.scaling,
                "log": [n for n, flag, _ in pairs if flag],
                "grid": [[n, float(s)] for n, _, s in pairs if s > 0]}  # fmt: skip


def describe_record(record: Mapping[str, Any]) -> str:
    """One line of a `ColumnStats.record`: scaling, log columns, dequantised grid columns."""
    grid = [f"{name} (step {step:g})" for name, step in record["grid"]]
    return (f"{len(record['names'])} columns, scaling {record['scaling']}; log: "
            f"{', '.join(record['log']) or 'none'}; dequantised grid columns: "
            f"{', '.join(grid) or 'none'}")  # fmt: skip


def decimals(step: float) -> int:
    """The decimals needed to write the values of a grid of `step` (0 for integers)."""
    for k in range(MAX_DECIMALS + 1):
        scaled = step * 10**k
        if abs(scaled - round(scaled)) <= 1e-9 * max(1.0, scaled):
            return k
    return MAX_DECIMALS


def grid_step(column: np.ndarray) -> tuple[float, float]:
    """(step, origin) of the grid a column's values lie on, (0, 0) if it is continuous."""
    for k in range(MAX_DECIMALS + 1):
        scaled = column * 10.0**k  # (N,)
        if np.abs(scaled).max() >= EXACT:
            break
        ints = np.round(scaled)
        if np.all(np.abs(scaled - ints) <= 1e-6):
            levels = np.unique(ints.astype(np.int64))  # sorted distinct values
            if levels.size < 2:
                break
            gap = int(np.gcd.reduce(np.diff(levels)))
            return gap / 10.0**k, float(levels[0]) / 10.0**k
    return 0.0, 0.0


def _log_mask(log: Sequence[str | int] | str, names: tuple[str, ...], header: bool) -> np.ndarray:
    """(D,) bool of the columns named (or indexed from 0) in `log`; "positive": all."""
    mask = np.zeros(len(names), dtype=bool)
    if log == "positive":
        return ~mask
    for item in log:
        if isinstance(item, int):
            if not 0 <= item < len(names):
                raise ConfigError(f"data.log_columns: index {item} is out of range "
                                  f"(the table has {len(names)} columns)")  # fmt: skip
            mask[item] = True
        elif header and item in names:
            mask[names.index(item)] = True
        else:
            known = ", ".join(names) if header else "the file has no header: use indices"
            raise ConfigError(f"data.log_columns: no column {item!r} ({known})")
    return mask


def _check_positive(table: Table, mask: np.ndarray) -> None:
    """Every value of a log column, in every row of the file, must be > 0 (else the first is
    named): a value the model could never score is refused up front."""
    bad = (table.values <= 0) & mask
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise DataError(f"{table.path}: {table.row(i)}, {table.column(j)}: "
                        f"{table.values[i, j]:g} is not > 0, which the log transform needs "
                        "(data.log_columns)")  # fmt: skip


def fit_columns(
    table: Table,
    train_rows: np.ndarray,
    *,
    scaling: str = "standard",
    log: Sequence[str | int] | str = (),
    grid: bool = True,
) -> ColumnStats:
    """Statistics of the training rows `table.values[train_rows]` (module docstring); `log`
    names or indexes (from 0) the log columns, "positive" takes every column."""
    if scaling not in SCALINGS:
        raise ConfigError(f"data.transform: {scaling!r} is not one of {', '.join(SCALINGS)}")
    train = table.values[train_rows]  # (N, D)
    mask = _log_mask(log, table.names, table.header is not None)
    _check_positive(table, mask)
    steps, origins = _grids(table, train, mask, grid)
    g = np.where(mask, np.log(np.where(mask, train, 1.0)), train)  # (N, D)
    shift, scale = _location_scale(g, scaling, table)
    mix = _whitening(table, (g - shift) / scale) if scaling == "whiten" else None
    return ColumnStats(table.names, table.header is not None, scaling, shift, scale, mask,
                       steps, origins, mix)  # fmt: skip


def _grids(
    table: Table, train: np.ndarray, mask: np.ndarray, grid: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(step, origin) of each column's grid ((0, 0): continuous); constant columns refused."""
    n, d = train.shape
    steps, origins = np.zeros(d), np.zeros(d)
    for j in range(d):
        if np.ptp(train[:, j]) == 0:
            raise DataError(f"{table.path}: {table.column(j)} is constant over the {n} training "
                            f"rows (every value is {train[0, j]:g}): zero scale, drop the "
                            "column")  # fmt: skip
        if grid:
            steps[j], origins[j] = grid_step(train[:, j])
            if mask[j] and steps[j] > 0 and train[:, j].min() - steps[j] / 2 <= 0:
                raise DataError(f"{table.path}: {table.column(j)}: the log transform needs "
                                f"values > {steps[j] / 2:g} (half the grid step, once "
                                "dequantised)")  # fmt: skip
    return steps, origins


def _whitening(table: Table, z: np.ndarray) -> np.ndarray:
    """W = L^-1 for the Cholesky factor of the covariance of standardised rows z (N, D)."""
    cov = z.T @ z / z.shape[0]  # (D, D), the columns have mean 0
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = None
    if chol is None or np.diag(chol).min() < 1e-6:
        raise DataError(f"{table.path}: the columns are linearly dependent over the "
                        f"{z.shape[0]} training rows: data.transform = 'whiten' needs a "
                        "full-rank covariance (use 'standard')")  # fmt: skip
    return np.linalg.inv(chol)


def _location_scale(g: np.ndarray, scaling: str, table: Table) -> tuple[np.ndarray, np.ndarray]:
    d = g.shape[1]
    if scaling == "none":
        return np.zeros(d), np.ones(d)
    if scaling in ("standard", "whiten"):
        return g.mean(0), g.std(0)
    q1, med, q3 = np.percentile(g, [25, 50, 75], axis=0)  # each (D,)
    scale = (q3 - q1) / IQR_TO_STD
    if (scale <= 0).any():
        j = int(np.flatnonzero(scale <= 0)[0])
        raise DataError(f"{table.path}: {table.column(j)}: interquartile range 0 over the training "
                        "rows (more than half the values are equal): use data.transform = "
                        "'standard'")  # fmt: skip
    return med, scale
