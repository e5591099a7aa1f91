"""Runs: data and model built from a `RunConfig`, trained into a run directory, loaded back.

A run directory holds what `genlab.train.fit` writes (`config.json`, `metrics.jsonl`,
`checkpoints/`); `config.json` is the record of `run_record`: the validated config, the data
dimension and the genlab version, enough to rebuild the model without the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab import registry
from genlab.config import DataConfig, RunConfig
from genlab.data.gmm import GaussianMixture
from genlab.data.points import load_points
from genlab.data.toy import make_toy
from genlab.diffusion.model import Diffusion
from genlab.diffusion.sample import sample as sample_with_budget
from genlab.errors import ConfigError, DataError
from genlab.eval.metrics import log_density_gap, sample_metrics, sliced_wasserstein
from genlab.train import TrainResult, fit, latest_checkpoint, load_weights

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def genlab_version() -> str:
    try:
        return metadata.version("genlab")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.1.0+src"


def gmm_ring() -> GaussianMixture:
    """The analytic `gmm-ring` set: 8 equal Gaussians (std 0.3) on a circle of radius 4."""
    return GaussianMixture.ring(k=8, radius=4.0, std=0.3)


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    """Training points and a held-out test split, float32 (N, D)."""

    train: Tensor
    test: Tensor
    gmm: GaussianMixture | None = None  # the exact density, for analytic sets

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def floor_references(self, n: int, k: int = 8) -> list[Tensor]:
        """Up to k disjoint sets of n training points: draws independent of the test split."""
        count = max(1, min(k, self.train.shape[0] // n))
        return [self.train[i * n : (i + 1) * n] for i in range(count)]


def _split_file(cfg: DataConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    assert cfg.path is not None  # checked by DataConfig
    points = load_points(cfg.path)  # (N, D)
    if points.shape[0] < cfg.n_test + 1:
        raise DataError(
            f"{cfg.path}: {points.shape[0]} points, need more than data.n_test = {cfg.n_test}"
        )
    points = points[torch.randperm(points.shape[0], generator=generator)]
    return points[cfg.n_test : cfg.n_test + cfg.n_train], points[: cfg.n_test]


def make_data(cfg: DataConfig) -> Data:
    """Train and test points, deterministic from `cfg.seed`; the test split is held out."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.name == registry.POINTS:
        train, test = _split_file(cfg, generator)
        return Data(train, test)
    n = cfg.n_train + cfg.n_test
    gmm = gmm_ring() if cfg.name == registry.GMM_RING else None
    if gmm is not None:
        points = gmm.sample(n, generator=generator).float()  # type: ignore[union-attr]
    else:
        points = make_toy(cfg.name, n, generator=generator)  # (n, 2)
    return Data(points[: cfg.n_train], points[cfg.n_train :], gmm)


# ----------------------------------------------------------------------------- model


def build_model(cfg: RunConfig, dim: int) -> Diffusion:
    """The network of `[net]` inside the preset of `[model]`, with its overrides."""
    net = registry.NETS[cfg.net.name](
        dim, hidden=cfg.net.hidden, depth=cfg.net.depth, time_dim=cfg.net.time_dim
    )
    return Diffusion.from_preset(cfg.model.preset, net, (dim,), **cfg.model.components())


def run_record(cfg: RunConfig, dim: int) -> dict[str, Any]:
    """What `config.json` of a run holds."""
    return {"genlab_version": genlab_version(), "data_dim": dim, "config": cfg.to_dict()}


def save_run_config(run_dir: Path | str, cfg: RunConfig, dim: int) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_record(cfg, dim), indent=2) + "\n")
    return path


def train_run(
    cfg: RunConfig, run_dir: Path | str, *, resume: bool = False, progress: bool | None = None
) -> tuple[TrainResult, Data]:
    """Build data and model from `cfg` and train into `run_dir` (see `genlab.train.fit`)."""
    data = make_data(cfg.data)
    model = build_model(cfg, data.dim)
    train_cfg = cfg.train.to_train_config()
    if progress is not None:
        train_cfg.progress = progress
    result = fit(model, data.train, train_cfg, run_dir, run_config=run_record(cfg, data.dim),
                 resume=resume)  # fmt: skip
    return result, data


# ----------------------------------------------------------------------------- loading


@dataclass
class Run:
    """A trained run: its config and the model with EMA weights, in eval mode."""

    run_dir: Path
    config: RunConfig
    model: Diffusion
    dim: int
    checkpoint: Path


def read_run_config(run_dir: Path | str) -> tuple[RunConfig, int]:
    """The config and data dimension from `run_dir/config.json`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing (is {run_dir} a genlab run directory?)")
    try:
        record = json.loads(path.read_text())
        values, dim = record["config"], int(record["data_dim"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"{path}: corrupt run config (not genlab's JSON record)") from None
    try:
        return RunConfig.from_dict(values), dim
    except ConfigError as err:
        raise DataError(f"{path}: {err}") from None


def load_run(run_dir: Path | str) -> Run:
    """Rebuild the model of a trained run and load its latest EMA weights."""
    run_dir = Path(run_dir)
    cfg, dim = read_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise DataError(f"{run_dir}: no checkpoint yet (train the run first)")
    model = build_model(cfg, dim)
    load_weights(ckpt, model, ema=True)
    model.eval()
    return Run(run_dir, cfg, model, dim, ckpt)


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SampleSpec:
    """How to sample: None means the model's (preset's) default."""

    sampler: str | None = None
    nfe: int | None = None
    schedule: str | None = None


def resolve(model: Diffusion, spec: SampleSpec) -> tuple[str, int, str]:
    """(sampler, nfe, schedule) of `spec` with the model's defaults filled in, names checked."""
    sampler = spec.sampler or model.sampler
    nfe = spec.nfe or model.nfe
    schedule = spec.schedule or model.schedule
    for key, value, table in (("sampler", sampler, registry.SAMPLERS),
                              ("schedule", schedule, registry.GRIDS)):  # fmt: skip
        if value not in table:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(table))}")
    if nfe < 1:
        raise ConfigError(f"nfe: must be >= 1 (got {nfe})")
    return sampler, nfe, schedule


@torch.no_grad()
def draw(
    model: Diffusion,
    n: int,
    spec: SampleSpec,
    *,
    seed: int = 0,
    trajectory: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """n samples (n, D) and, if asked, the states along the way; deterministic from `seed`.

    `callback` receives the sampler's per-step dict (`x`, `sigma`, `denoised`, ...).
    """
    sampler, nfe, schedule = resolve(model, spec)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *model.data_shape), generator=generator)  # (n, D)
    try:
        out = sample_with_budget(
            model.denoiser, noise, sampler=sampler, nfe=nfe, schedule=schedule,
            path=model.objective.path, generator=generator, return_trajectory=trajectory,
            callback=callback,
        )  # fmt: skip
    except ValueError as err:
        raise ConfigError(f"sampling with {sampler} at nfe={nfe}: {err}") from None
    if isinstance(out, tuple):
        return out
    return out, []


# ----------------------------------------------------------------------------- evaluation


def evaluate(samples: Tensor, data: Data, *, seed: int = 0) -> dict[str, float]:
    """Distances of `samples` to the held-out test split, next to their floor.

    `sw2_floor` is the sliced W2 between two independent draws of the data of the test
    split's size (disjoint sets of training points vs the test points, averaged over up to 8
    sets); `sw2_ratio` = sliced W2 / floor, so 2 means "twice as far from the test set as
    fresh data is". On analytic data,
    `log_density_gap` = mean log p(samples) - mean log p(test) under the exact density.
    """

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    metrics = sample_metrics(samples, data.test, generator=gen())
    floors = [sliced_wasserstein(ref, data.test, generator=gen())
              for ref in data.floor_references(data.test.shape[0])]  # fmt: skip
    metrics["sw2_floor"] = sum(floors) / len(floors)
    metrics["sw2_ratio"] = metrics["sliced_wasserstein"] / metrics["sw2_floor"]
    if data.gmm is not None:
        metrics["log_density_gap"] = log_density_gap(samples, data.test, data.gmm.log_prob)
    return metrics
