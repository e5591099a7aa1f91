"""Training runs for the data-parallel tests, identical in every process that runs them.

`python -m torch.distributed.run --nproc-per-node 2 _ddp_cases.py OUT` trains every case
data-parallel (each rank joins the gloo group torchrun set up); the test trains the same
cases in its own process with the same `shards` and compares the weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _train_models import make_data, make_model

from genlab.config import RunConfig
from genlab.train import TrainConfig, fit

SHARDS = 2
FLOW_MATCHING = {"model": {"preset": "flow-matching"},
                 "net": {"name": "mlp", "hidden": 16, "depth": 2, "time_dim": 8}}  # fmt: skip
GLOW = {"model": {"family": "glow"}, "flow": {"steps": 2, "hidden": 8, "layers": 1}}
TRAIN = {"steps": 6, "batch_size": 16, "shards": SHARDS, "warmup_steps": 2, "ema_decay": 0.9,
         "checkpoint_every": 3, "log_every": 2, "progress": False}  # fmt: skip
# (name, family sections): trained from a run config by genlab.runs.train_run
FAMILIES = {"flow_matching": FLOW_MATCHING, "glow": GLOW}


def run_config(sections: dict) -> RunConfig:
    """A tiny run on 64 two-moons points."""
    data = {"name": "moons", "n_train": 64, "n_test": 16, "seed": 0}
    return RunConfig.from_dict({"data": data, **sections, "train": TRAIN})


def train_noisy(out: Path) -> None:
    """The trainer's own test model (noise drawn in its loss), class labels, clipping."""
    data, cond = make_data()
    cfg = TrainConfig(**{**TRAIN, "steps": 8, "grad_clip": 0.5})
    fit(make_model(), data, cfg, out / "noisy", cond=cond)


def train_accumulated(out: Path) -> None:
    """float64, two micro-batches per step, validation on a carved split selecting the best."""
    data, cond = make_data()
    cfg = TrainConfig(**{**TRAIN, "grad_accum": 2, "val_every": 2, "val_fraction": 0.25,
                         "select": "best"})  # fmt: skip
    fit(make_model().double(), data.double(), cfg, out / "accumulated", cond=cond)


def train_all(out: Path) -> None:
    """Every case into out/<case>."""
    from genlab.runs import train_run

    torch.set_num_threads(1)
    train_noisy(out)
    train_accumulated(out)
    for name, sections in FAMILIES.items():
        train_run(run_config(sections), out / name)


if __name__ == "__main__":
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        train_all(Path(sys.argv[1]))
    finally:
        dist.destroy_process_group()
