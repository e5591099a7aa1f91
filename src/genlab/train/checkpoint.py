"""Checkpoint directories, written atomically so a kill at any moment leaves a usable run.

Layout of a run directory::

    run_dir/config.json                          the run configuration
    run_dir/metrics.jsonl                        one JSON object per log step
    run_dir/checkpoints/latest                   text file: name of the newest checkpoint
    run_dir/checkpoints/step_00001000/
        config.json  model.safetensors  ema.safetensors  trainer_state.pt
    run_dir/checkpoints/best/                    best validation step so far (never pruned)
        config.json  model.safetensors  ema.safetensors  val.json

A checkpoint is written into a temporary directory (name starting with `.tmp-`), every file
is fsynced, and the directory is renamed into place; then `latest` is replaced atomically and
old checkpoints are pruned. A `step_*` directory therefore always holds a complete
checkpoint; temporaries left by a killed write are ignored and removed by `clean_temporaries`.
`trainer_state.pt` is only ever read with `torch.load(..., weights_only=True)`.

`best/` is replaced as a whole: the new one is written to `.tmp-best`, the old one renamed to
`.best-old`, the new one renamed into place and the old one deleted. A kill between the two
renames leaves only `.best-old`, which `best_checkpoint` then returns and `clean_temporaries`
renames back to `best`. `best/` holds no trainer state: it is for loading, not resuming.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from genlab.errors import DataError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TMP_PREFIX = ".tmp-"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "trainer_state.pt"
BEST = "best"
BEST_OLD = ".best-old"  # the previous best/ while a new one is renamed into place
VAL_FILE = "val.json"


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint taken after `step` optimizer steps."""
    return f"step_{step:08d}"


def _step_of(path: Path) -> int | None:
    """Step number encoded in a `step_<8 digits>` directory name, else None."""
    name = path.name
    if not name.startswith("step_") or not name[5:].isdigit():
        return None
    return int(name[5:])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a synced temporary file and `os.replace`."""
    tmp = path.with_name(TMP_PREFIX + path.name)
    _write_synced(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _tensor_bytes(tensors: dict[str, Tensor]) -> bytes:
    # copy=True: contiguous CPU copies that share no storage (safetensors rejects shared storage)
    return safetensors_bytes({k: v.detach().to("cpu", copy=True) for k, v in tensors.items()})


def _torch_bytes(obj: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _fresh_weights_dir(
    tmp: Path,
    run_config: dict[str, Any],
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor],
) -> Path:
    """A new, empty `tmp` holding the run config and both weight files (fsynced)."""
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _write_synced(tmp / CONFIG_FILE, json_bytes(run_config))
    _write_synced(tmp / MODEL_FILE, _tensor_bytes(model_state))
    _write_synced(tmp / EMA_FILE, _tensor_bytes(ema_state))
    return tmp


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor],
    trainer_state: dict[str, Any],
    run_config: dict[str, Any],
    keep: int,
) -> Path:
    """Atomically write checkpoint `step`, point `latest` at it, prune to `keep`; return its dir."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = _fresh_weights_dir(root / (TMP_PREFIX + final.name), run_config, model_state,
                             ema_state)  # fmt: skip
    _write_synced(tmp / STATE_FILE, _torch_bytes(trainer_state))
    _fsync_dir(tmp)
    if final.exists():  # only after a fresh restart; never the checkpoint `latest` points to
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    atomic_write(root / LATEST, final.name.encode())
    prune(root, keep)
    return final


def prune(root: Path, keep: int) -> None:
    """Delete all but the `keep` newest complete checkpoints under `root`."""
    for old in _step_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _step_dirs(root: Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first."""
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and _step_of(p) is not None]
    return sorted(dirs, key=lambda p: _step_of(p) or 0)


def save_best(
    run_dir: Path,
    *,
    step: int,
    score: float,
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor],
    run_config: dict[str, Any],
) -> Path:
    """Atomically replace `checkpoints/best/` with these weights and `val.json`; return it."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    _recover_best(root)
    final, old = root / BEST, root / BEST_OLD
    tmp = _fresh_weights_dir(root / (TMP_PREFIX + BEST), run_config, model_state, ema_state)
    _write_synced(tmp / VAL_FILE, json_bytes({"step": int(step), "val_loss": float(score)}))
    _fsync_dir(tmp)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(root)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return final


def _recover_best(root: Path) -> None:
    """Finish or undo a `best/` replacement cut short by a kill (see the module docstring)."""
    old = root / BEST_OLD
    if not old.is_dir():
        return
    if (root / BEST).is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(old, root / BEST)
        _fsync_dir(root)


def best_checkpoint(run_dir: Path | str) -> Path | None:
    """The best-validation checkpoint of a run (`checkpoints/best`), or None if it has none.

    Only runs trained with validation (`TrainConfig.val_every > 0`) have one. It holds
    model/EMA weights, config.json and val.json ({"step", "val_loss"}), but no trainer state.
    """
    root = Path(run_dir) / CHECKPOINTS
    for name in (BEST, BEST_OLD):
        if (root / name / VAL_FILE).is_file():
            return root / name
    return None


def read_best_info(ckpt_dir: Path | str) -> dict[str, Any]:
    """`val.json` of a best checkpoint: {"step": int, "val_loss": float}."""
    path = Path(ckpt_dir) / VAL_FILE
    try:
        info = json.loads(path.read_text())
        return {"step": int(info["step"]), "val_loss": float(info["val_loss"])}
    except FileNotFoundError:
        raise DataError(f"checkpoint file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"checkpoint file {path} is corrupt") from None


def clean_temporaries(run_dir: Path) -> None:
    """Remove temporaries left by a killed write in `run_dir` and its checkpoints folder.

    Also completes an interrupted replacement of `checkpoints/best`.
    """
    if (run_dir / CHECKPOINTS).is_dir():
        _recover_best(run_dir / CHECKPOINTS)
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.name.startswith(TMP_PREFIX):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    """The newest complete checkpoint of a run, or None if it has none.

    Normally the directory named in `checkpoints/latest`; if a newer `step_*` directory exists
    (the run was killed between renaming it into place and updating the pointer), that one.
    """
    root = Path(run_dir) / CHECKPOINTS
    dirs = _step_dirs(root)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named.is_dir() and (not dirs or (_step_of(named) or 0) >= (_step_of(dirs[-1]) or 0)):
            return named
    return dirs[-1] if dirs else None


def checkpoint_step(ckpt_dir: Path) -> int:
    """Step number of a checkpoint directory (from its name)."""
    step = _step_of(ckpt_dir)
    if step is None:
        raise DataError(f"{ckpt_dir} is not a checkpoint directory (expected step_<8 digits>)")
    return step


def read_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file; a missing or corrupt file is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"checkpoint file {path} is corrupt: {err}") from None


def read_trainer_state(ckpt_dir: Path) -> dict[str, Any]:
    """Load `trainer_state.pt` with `weights_only=True`; missing/corrupt is a DataError."""
    path = Path(ckpt_dir) / STATE_FILE
    if not path.is_file():
        raise DataError(f"checkpoint file {path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise DataError(f"checkpoint file {path} is corrupt: {err}") from None
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise DataError(f"checkpoint file {path} is not a genlab trainer state")
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
