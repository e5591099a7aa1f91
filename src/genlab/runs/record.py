"""The record of a run directory: `config.json`, written before training and read back
without loading torch (so that a missing or corrupt run is reported at once).

A run directory holds what `genlab.train.fit` writes (`config.json`, `metrics.jsonl`,
`checkpoints/`); `config.json` is the record of `run_record`: the validated config, the
shape of one example and the genlab version, enough to rebuild the model without the data.
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab import registry
from genlab.config import RunConfig
from genlab.config.sections import DIGITS_SIZE
from genlab.errors import ConfigError, DataError
from genlab.train.rundir import check_run_dir

if TYPE_CHECKING:
    from genlab.data.columns import ColumnStats

__all__ = ["CONFIG_FILE", "METRICS_FILE", "TRANSFORM_KEY", "genlab_version", "read_record",
           "read_run_config", "run_record"]  # fmt: skip

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TRANSFORM_KEY = "data_transform"  # config.json: the data transform's record


def genlab_version() -> str:
    try:
        return metadata.version("genlab")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.1.0+src"


def run_record(
    cfg: RunConfig, shape: int | tuple[int, ...], columns: ColumnStats | None = None
) -> dict[str, Any]:
    """What `config.json` of a run holds; with a data transform, what it does to which
    column (`ColumnStats.record`; the statistics themselves are model buffers)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    record = {"genlab_version": genlab_version(), "data_dim": math.prod(shape),
              "data_shape": list(shape), "config": cfg.to_dict()}  # fmt: skip
    if columns is not None:
        record[TRANSFORM_KEY] = columns.record()
    return record


def read_record(run_dir: Path | str) -> dict[str, Any]:
    """The parsed `run_dir/config.json`, as written by `run_record`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    check_run_dir(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing (is {run_dir} a genlab run directory?)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise DataError(f"{path}: corrupt run config (not genlab's JSON record)")
    return record


def read_run_config(
    run_dir: Path | str, record: dict[str, Any] | None = None
) -> tuple[RunConfig, tuple[int, ...]]:
    """The config and the shape of one example from `run_dir/config.json` (or from its
    `record`, already read)."""
    path = Path(run_dir) / CONFIG_FILE
    record = read_record(run_dir) if record is None else record
    try:
        values = record["config"]
        shape = tuple(int(s) for s in record.get("data_shape", [record["data_dim"]]))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: corrupt run config (not genlab's JSON record)") from None
    try:
        cfg = RunConfig.from_dict(values)
    except ConfigError as err:
        raise DataError(f"{path}: {err}") from None
    _check_shape(path, cfg, shape, record.get("data_dim"))
    return cfg, shape


def _check_shape(path: Path, cfg: RunConfig, shape: tuple[int, ...], dim: Any) -> None:
    """The example shape must be one the config's data can have: (D,) for vectors, (C, H, W)
    for images, the set's own shape where it is fixed, and D = prod(shape) if recorded."""
    data = cfg.data
    fixed: tuple[int, ...] | None = None
    if data.name in (*registry.TOY_DATASETS, registry.GMM_RING):
        fixed = (2,)
    elif data.name == registry.DIGITS:
        fixed = (1, DIGITS_SIZE, DIGITS_SIZE)
    rank = 3 if data.is_image else 1
    wrong = len(shape) != rank or min(shape, default=0) < 1 or (fixed and shape != fixed)
    if wrong or (dim is not None and dim != math.prod(shape)):
        want = fixed or ("(C, H, W)" if data.is_image else "(D,)")
        raise DataError(f"{path}: data_shape {list(shape)} (data_dim {dim}) cannot be the shape "
                        f"of data.name = {data.name!r} examples ({want})")  # fmt: skip
