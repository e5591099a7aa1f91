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
from typing import Any

from genlab.config import RunConfig
from genlab.errors import ConfigError, DataError
from genlab.train.rundir import check_run_dir

__all__ = ["CONFIG_FILE", "METRICS_FILE", "genlab_version", "read_run_config", "run_record"]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def genlab_version() -> str:
    try:
        return metadata.version("genlab")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.1.0+src"


def run_record(cfg: RunConfig, shape: int | tuple[int, ...]) -> dict[str, Any]:
    """What `config.json` of a run holds."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return {"genlab_version": genlab_version(), "data_dim": math.prod(shape),
            "data_shape": list(shape), "config": cfg.to_dict()}  # fmt: skip


def read_run_config(run_dir: Path | str) -> tuple[RunConfig, tuple[int, ...]]:
    """The config and the shape of one example from `run_dir/config.json`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    check_run_dir(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing (is {run_dir} a genlab run directory?)")
    try:
        record = json.loads(path.read_text())
        values = record["config"]
        shape = tuple(int(s) for s in record.get("data_shape", [record["data_dim"]]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"{path}: corrupt run config (not genlab's JSON record)") from None
    try:
        return RunConfig.from_dict(values), shape
    except ConfigError as err:
        raise DataError(f"{path}: {err}") from None
