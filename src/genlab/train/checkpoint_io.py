"""Reading the files of a checkpoint, each checked before it is trusted.

Every file of a checkpoint directory is listed with its SHA-256 in `sha256.json` (written by
`genlab.train.checkpoint`); a file whose digest differs was truncated or altered and is
reported as a `CorruptCheckpoint` naming it, before anything parses it. Checkpoints of older
versions have no `sha256.json` and are checked by parsing alone. Weights are safetensors;
`trainer_state.pt` is only ever read with `torch.load(..., weights_only=True)`: nothing
here unpickles arbitrary objects. No file may be a link leading out of its checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from genlab.errors import DataError
from genlab.train.rundir import refuse_outside

__all__ = ["CONFIG_FILE", "EMA_FILE", "MANIFEST", "MODEL_FILE", "STATE_FILE", "VAL_FILE",
           "CorruptCheckpoint", "load_weights", "read_best_info", "read_checked",
           "read_tensors", "read_trainer_state"]  # fmt: skip

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "trainer_state.pt"
MANIFEST = "sha256.json"
VAL_FILE = "val.json"


class CorruptCheckpoint(DataError):
    """A checkpoint file is missing, unreadable, truncated or altered (`path` names it)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"checkpoint file {path} {problem}")
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        """The checkpoint directory holding the bad file."""
        return self.path.parent


def _manifest(ckpt_dir: Path) -> dict[str, str]:
    """`sha256.json` of a checkpoint: file name -> SHA-256 (empty for older checkpoints)."""
    path = ckpt_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        refuse_outside(path, ckpt_dir)
        digests = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        digests = None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise CorruptCheckpoint(path, "is corrupt (not genlab's list of file digests)")
    return digests


def read_checked(path: Path) -> bytes:
    """The bytes of checkpoint file `path`, checked against its checkpoint's `sha256.json`."""
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpoint(path, "is missing")
    refuse_outside(path, path.parent)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorruptCheckpoint(path, f"cannot be read ({err.strerror})") from None
    expected = _manifest(path.parent).get(path.name)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CorruptCheckpoint(path, f"is corrupt (truncated or altered: its SHA-256 differs "
                                      f"from the one in {MANIFEST})")  # fmt: skip
    return data


def read_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file; a missing or corrupt file is a CorruptCheckpoint naming it."""
    data = read_checked(path)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CorruptCheckpoint(path, f"is corrupt: {err}") from None
    return {k: v.to(device) for k, v in tensors.items()}


def read_trainer_state(ckpt_dir: Path) -> dict[str, Any]:
    """Load `trainer_state.pt` with `weights_only=True`; missing/corrupt is a CorruptCheckpoint."""
    path = Path(ckpt_dir) / STATE_FILE
    data = read_checked(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorruptCheckpoint(path, f"is corrupt: {first}") from None
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise CorruptCheckpoint(path, "is not a genlab trainer state")
    return state


def load_weights(ckpt_dir: Path | str, model: nn.Module, *, ema: bool = True) -> nn.Module:
    """Load `ema.safetensors` (or `model.safetensors` if `ema=False`) into `model`, in place."""
    path = Path(ckpt_dir) / (EMA_FILE if ema else MODEL_FILE)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    tensors = read_tensors(path, device)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise DataError(f"checkpoint file {path} does not fit the model: {err}") from None
    return model


def read_best_info(ckpt_dir: Path | str) -> dict[str, Any]:
    """`val.json` of a best checkpoint: {"step": int, "val_loss": float}."""
    path = Path(ckpt_dir) / VAL_FILE
    try:
        info = json.loads(read_checked(path))
        return {"step": int(info["step"]), "val_loss": float(info["val_loss"])}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise CorruptCheckpoint(path, "is corrupt") from None
