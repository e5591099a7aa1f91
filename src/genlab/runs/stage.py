"""The data transform stage of a run: fitted from `[data]` on the rows the trainer trains on.

`fit_stage` fits the column statistics (`genlab.data.columns`) of vector data on the training
rows only: the test split is held out by `make_data`, and the validation rows the trainer
carves with `train.val_fraction` (`genlab.train.validation.split_validation`, seeded by
`train.seed`) are left out too, so that neither selection nor the test score sees statistics
of its own rows. The fitted `ColumnTransform` becomes buffers of the run's model
(`genlab.transform.Transformed`); config.json records what was done to which column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.config import RunConfig
from genlab.data.columns import ColumnStats, fit_columns
from genlab.data.points import Table
from genlab.errors import DataError
from genlab.runs.data import MIN_TRAIN_ROWS, Data
from genlab.train.validation import split_validation

__all__ = ["fit_stage", "fitted_rows"]


def fitted_rows(cfg: RunConfig, data: Data) -> tuple[Table, np.ndarray, np.ndarray | None]:
    """(table, training rows, validation rows or None) of vector data, as rows of the table;
    a built-in set is a table of its training points."""
    table, rows = data.table, data.train_rows
    if table is None or rows is None:
        table = Table(Path(cfg.data.name), data.train.double().numpy())
        rows = np.arange(data.train.shape[0])
    frac = cfg.train.val_fraction
    if frac == 0:
        return table, rows, None
    n = rows.shape[0]
    n_val = min(n - 1, max(1, round(frac * n))) if n >= 2 else n
    if n - n_val < MIN_TRAIN_ROWS:
        total = table.values.shape[0]
        raise DataError(f"{table.path}: {total} rows, the split needs at least "
                        f"{total - n + n_val + MIN_TRAIN_ROWS}: {total - n} test rows "
                        f"(data.n_test), {n_val} validation row(s) (train.val_fraction = "
                        f"{frac:g}) and {MIN_TRAIN_ROWS} training rows")  # fmt: skip
    train_idx, val_idx = split_validation(n, frac, cfg.train.seed)
    return table, rows[train_idx.numpy()], rows[val_idx.numpy()]


def fit_stage(cfg: RunConfig, data: Data) -> ColumnStats | None:
    """The column statistics of the run's data transform, None when it has none (or when
    it would change nothing: no scaling, no log column, no grid column found)."""
    if not cfg.data.has_transform:
        return None
    table, train_rows, _ = fitted_rows(cfg, data)
    d = cfg.data
    stats = fit_columns(table, train_rows, scaling=d.scaling, log=d.log_columns,
                        grid=d.grid_columns)  # fmt: skip
    return None if stats.is_identity else stats
