"""Tiny runs for the latent diffusion tests: a KL autoencoder of the 8x8 digits (4x4x2
latents) trained for a few hundred steps, and the configs of small latent models over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genlab.config import RunConfig
from genlab.runs import train_run

AUTOENCODER: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"family": "kl-autoencoder"},
    "kl-autoencoder": {"channels": 16, "latent_dim": 2, "kl_weight": 1e-5},
    "train": {"steps": 200, "batch_size": 64, "lr": 3e-3, "warmup_steps": 10,
              "ema_decay": 0.0, "checkpoint_every": 200, "log_every": 50, "progress": False},
}  # fmt: skip
NET = {"name": "unet", "channels": 8, "channel_mult": [1, 2], "attention_levels": [1],
       "head_dim": 8}  # fmt: skip


def autoencoder_config(steps: int = 200) -> RunConfig:
    values = {**AUTOENCODER, "train": {**AUTOENCODER["train"], "steps": steps,
                                       "checkpoint_every": steps}}  # fmt: skip
    return RunConfig.from_dict(values)


def train_autoencoder(run_dir: Path, steps: int = 200) -> Path:
    """The tiny autoencoder run in `run_dir` (trained once: reused if it is there)."""
    if not (run_dir / "checkpoints").is_dir():
        train_run(autoencoder_config(steps), run_dir, progress=False)
    return run_dir


def latent_config(autoencoder: Path, **sections: dict[str, Any]) -> RunConfig:
    """A small class-conditional latent DDPM over the autoencoder run (3 training steps)."""
    values: dict[str, Any] = {
        "data": {"name": "digits", "labels": True},
        "model": {"family": "latent-diffusion", "num_classes": 10, "label_dropout": 0.2},
        "latent-diffusion": {"autoencoder": str(autoencoder), "preset": "ddpm"},
        "net": dict(NET),
        "train": {"steps": 3, "batch_size": 16, "checkpoint_every": 3, "log_every": 1,
                  "progress": False},
        "sample": {"sampler": "dpmpp_2m", "nfe": 4, "n": 20},
    }  # fmt: skip
    for name, options in sections.items():
        values[name] = {**values.get(name, {}), **options}
    return RunConfig.from_dict(values)
