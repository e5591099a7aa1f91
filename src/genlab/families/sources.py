"""Runs a family is built on: a prior over a tokenizer's codes, Medusa heads over a prior.

A config names the other run (its *source*) by its run directory or by a TOML run config;
a TOML config is trained once into `<cache>/<stem>-<hash of the config>` and reused by every
config that names it (an interrupted training resumes). The family's `prepare` embeds the
source's record (its validated config and example shape, `record`) in its own config, so
the run directory alone rebuilds the model; `trained` returns the source's trained model
while its directory still matches that record, to copy its weights into the new model
before training. Afterwards the weights live in the dependent run's own checkpoints.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.protocol import GenerativeModel

__all__ = ["config_digest", "record", "resolve", "source_config", "trained"]


def config_digest(cfg: RunConfig) -> str:
    """A short hash of a validated config (its TOML form)."""
    return hashlib.sha1(cfg.to_toml().encode()).hexdigest()[:10]


def resolve(spec: str, cache: str, key: str) -> Path:
    """The run directory of source `spec` (option `key` in errors): a run directory as it is,
    a TOML run config trained (or resumed, or reused) under `cache`."""
    from genlab.config import load_config
    from genlab.runs import train_run

    path = Path(spec)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ConfigError(f"{key}: {spec}: config file not found")
        try:
            cfg = load_config(path)
        except ConfigError as err:
            raise ConfigError(f"{key}: {spec}: {err}") from None
        run_dir = Path(cache) / f"{path.stem}-{config_digest(cfg)}"
        train_run(cfg, run_dir, resume=True)
        return run_dir
    if not path.is_dir():
        raise ConfigError(f"{key}: {spec}: neither a run directory nor a .toml run config")
    return path


def record(run_dir: Path | str, key: str) -> dict[str, Any]:
    """What a dependent config embeds of the run in `run_dir`: {"config", "shape"}."""
    from genlab.runs import read_run_config

    try:
        cfg, shape = read_run_config(run_dir)
    except DataError as err:
        raise ConfigError(f"{key}: {err}") from None
    return {"config": cfg.to_dict(), "shape": list(shape)}


def source_config(rec: dict[str, Any], key: str) -> tuple[RunConfig, tuple[int, ...]]:
    """The config and example shape of an embedded record."""
    from genlab.config import RunConfig

    try:
        return RunConfig.from_dict(rec["config"]), tuple(int(s) for s in rec["shape"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{key}: not a run record ({err})") from None


def trained(run_dir: str | None, rec: dict[str, Any]) -> GenerativeModel | None:
    """The trained model of the source run, if `run_dir` still holds the run of `rec` (same
    config and shape) with a checkpoint; None otherwise."""
    from genlab.runs import load_run

    if run_dir is None or not Path(run_dir).is_dir():
        return None
    try:
        run = load_run(run_dir)
    except (ConfigError, DataError):
        return None
    same = run.config.to_dict() == rec["config"] and list(run.shape) == list(rec["shape"])
    return run.model if same else None
