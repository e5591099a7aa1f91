"""`TrainState`: what evolves during training, and its round trip through a checkpoint.

The weights go to safetensors files; the rest (step, optimizer state, time spent, the
`TrainConfig` used and the validation bookkeeping) to `trainer_state.pt`. A resumed run must
use the same values of the fields that shape its trajectory, which `restore` checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.train import checkpoint as ckpt
from genlab.train.config import TrainConfig, normalize_saved
from genlab.train.ema import EMA

# fields that change the trajectory: a resumed run must use the same values
_TRAJECTORY_FIELDS = (
    "batch_size", "lr", "weight_decay", "betas", "warmup_steps", "grad_clip", "grad_accum",
    "ema_decay", "bf16", "seed", "val_fraction", "shards",
)  # fmt: skip
# fields that change the meaning of the saved validation bookkeeping
_VALIDATION_FIELDS = ("val_every", "val_seed", "val_use_ema")


@dataclass
class TrainState:
    """Everything that evolves during training. `step` counts completed optimizer steps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    step: int = 0
    elapsed: float = 0.0
    best_val: float | None = None  # best validation score so far
    best_step: int | None = None  # the step it was reached at
    bad_evals: int = 0  # evaluations since the last improvement
    train_seconds: float = 0.0  # time spent in optimizer steps, on cfg.time_clock

    @classmethod
    def create(cls, model: nn.Module, cfg: TrainConfig) -> TrainState:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        return cls(model=model, optimizer=optimizer, ema=EMA(model, cfg.ema_decay))

    def trainer_state(self, cfg: TrainConfig) -> dict[str, Any]:
        """The part of the state saved in `trainer_state.pt` (weights go to safetensors)."""
        validation = {"best_val": self.best_val, "best_step": self.best_step,
                      "bad_evals": self.bad_evals}  # fmt: skip
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "elapsed": self.elapsed, "train_seconds": self.train_seconds,
                "train_config": cfg.to_dict(), "validation": validation}  # fmt: skip

    def restore(
        self, ckpt_dir: Path, cfg: TrainConfig, saved: dict[str, Any] | None = None
    ) -> None:
        """Load weights, EMA and optimizer state from a checkpoint directory (`saved`: its
        trainer state, if already read)."""
        saved = ckpt.read_trainer_state(ckpt_dir) if saved is None else saved
        _check_same_trajectory(saved.get("train_config", {}), cfg, ckpt_dir)
        self.load_weights(ckpt_dir)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.elapsed = int(saved["step"]), float(saved.get("elapsed", 0.0))
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        validation = saved.get("validation") or {}
        best_val, best_step = validation.get("best_val"), validation.get("best_step")
        self.best_val = None if best_val is None else float(best_val)
        self.best_step = None if best_step is None else int(best_step)
        self.bad_evals = int(validation.get("bad_evals", 0))

    def load_weights(self, ckpt_dir: Path) -> None:
        """Load the model and EMA weights (not the optimizer) of a checkpoint directory."""
        ckpt.load_weights(ckpt_dir, self.model, ema=False)
        device = next(iter(self.ema.shadow.values())).device if self.ema.shadow else "cpu"
        self.ema.load_state_dict(ckpt.read_tensors(ckpt_dir / ckpt.EMA_FILE, device))

    def record_validation(self, score: float) -> bool:
        """Book a validation score at the current step; True if it is a new best.

        Only a strictly lower finite score improves; NaN or inf count as no improvement.
        """
        if math.isfinite(score) and (self.best_val is None or score < self.best_val):
            self.best_val, self.best_step, self.bad_evals = score, self.step, 0
            return True
        self.bad_evals += 1
        return False

    def patience_exhausted(self, cfg: TrainConfig) -> bool:
        return cfg.val_every > 0 and cfg.patience > 0 and self.bad_evals >= cfg.patience

    def out_of_time(self, cfg: TrainConfig) -> bool:
        return cfg.max_seconds > 0 and self.train_seconds >= cfg.max_seconds


def _check_same_trajectory(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    """Raise ConfigError if `cfg` differs from the saved config in a field that matters."""
    saved, now = normalize_saved(saved), cfg.to_dict()
    names = _TRAJECTORY_FIELDS
    if saved.get("val_every", 0) > 0 and cfg.val_every > 0:  # validation bookkeeping to continue
        names += _VALIDATION_FIELDS
    for name in names:
        if name in saved and saved[name] != now[name]:
            raise ConfigError(
                f"train.{name} is {now[name]!r} but the checkpoint {where} was trained with "
                f"{saved[name]!r}; resume needs the same value (or start a new run_dir)"
            )
