"""Checkpoint directories, written atomically so a kill at any moment leaves a usable run.

Layout of a run directory::

    run_dir/config.json                          the run configuration
    run_dir/metrics.jsonl                        one JSON object per log step
    run_dir/checkpoints/latest                   text file: name of the newest checkpoint
    run_dir/checkpoints/step_00001000/
        config.json  model.safetensors  ema.safetensors  trainer_state.pt  sha256.json
    run_dir/checkpoints/best/                    best validation step so far (never pruned)
        config.json  model.safetensors  ema.safetensors  val.json  sha256.json

A checkpoint is written into a temporary directory (name starting with `.tmp-`), every file
is fsynced, and the directory is renamed into place; then `latest` is replaced atomically and
old checkpoints are pruned. A `step_*` directory therefore always holds a complete
checkpoint; temporaries left by a killed write are ignored and removed by `clean_temporaries`.
`trainer_state.pt` is only ever read with `torch.load(..., weights_only=True)`.

`best/` is replaced as a whole: the new one is written to `.tmp-best`, the old one renamed to
`.best-old`, the new one renamed into place and the old one deleted. A kill between the two
renames leaves only `.best-old`, which `best_checkpoint` then returns and `clean_temporaries`
renames back to `best`. `best/` holds no trainer state: it is for loading, not resuming.

Failures. A failed write (disk full, permission denied) raises an OSError naming the file;
its temporary is removed and every earlier checkpoint is left as it was. `sha256.json` lists
every file's digest (checked by `genlab.train.checkpoint_io`); `intact_checkpoints` lists
what a run can fall back to. `latest` must name a `step_*` directory, and no checkpoint path
may lead outside the run directory (`genlab.train.rundir`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from genlab.errors import ConfigError, DataError
from genlab.train.checkpoint_io import (
    CONFIG_FILE,
    EMA_FILE,
    MANIFEST,
    MODEL_FILE,
    STATE_FILE,
    VAL_FILE,
    CorruptCheckpoint,
    load_weights,
    read_best_info,
    read_checked,
    read_tensors,
    read_trainer_state,
)
from genlab.train.rundir import refuse_outside

__all__ = ["BEST", "BEST_OLD", "CHECKPOINTS", "CONFIG_FILE", "EMA_FILE", "LATEST", "MANIFEST",
           "MODEL_FILE", "STATE_FILE", "TMP_PREFIX", "VAL_FILE", "CorruptCheckpoint",
           "atomic_write", "best_checkpoint", "check_fresh", "checkpoint_step",
           "clean_temporaries", "intact_checkpoints", "json_bytes", "latest_checkpoint",
           "load_weights", "named_checkpoint", "named_os_error", "prune", "read_best_info",
           "read_checked", "read_tensors", "read_trainer_state", "save_best", "save_checkpoint",
           "step_checkpoints", "step_dir_name"]  # fmt: skip

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TMP_PREFIX = ".tmp-"
BEST = "best"
BEST_OLD = ".best-old"  # the previous best/ while a new one is renamed into place


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint taken after `step` optimizer steps."""
    return f"step_{step:08d}"


def _step_of(path: Path) -> int | None:
    """Step number encoded in a `step_<8 digits>` directory name, else None."""
    name = path.name
    if not name.startswith("step_") or len(name) != 13 or not name[5:].isdigit():
        return None
    return int(name[5:])


# ----------------------------------------------------------------------------- writing


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


def named_os_error(err: OSError, path: Path, note: str = "") -> OSError:
    """`err` as an OSError naming `path` (a failed write() names no file), `note` appended."""
    return OSError(err.errno, f"{err.strerror or err}{note}", str(path))


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a synced temporary file and `os.replace`.

    On failure the temporary is removed, `path` keeps its old content and the OSError
    names `path`."""
    tmp = path.with_name(TMP_PREFIX + path.name)
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise named_os_error(err, path) from None


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _tensor_bytes(tensors: dict[str, Tensor]) -> bytes:
    # copy=True: contiguous CPU copies that share no storage (safetensors rejects shared storage)
    return safetensors_bytes({k: v.detach().to("cpu", copy=True) for k, v in tensors.items()})


def _torch_bytes(obj: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


Files = dict[str, Callable[[], bytes]]  # file name -> its content, made when written


def _weight_files(
    run_config: dict[str, Any], model_state: dict[str, Tensor], ema_state: dict[str, Tensor]
) -> Files:
    return {CONFIG_FILE: lambda: json_bytes(run_config),
            MODEL_FILE: lambda: _tensor_bytes(model_state),
            EMA_FILE: lambda: _tensor_bytes(ema_state)}  # fmt: skip


def _write_dir(tmp: Path, files: Files, intact: str) -> None:
    """A new, empty `tmp` holding `files` and their `sha256.json`, all fsynced.

    A failed write removes `tmp` and raises an OSError naming the file and saying what is
    left `intact`."""
    current = tmp
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        digests = {}
        for name, content in files.items():
            data, current = content(), tmp / name
            _write_synced(current, data)
            digests[name] = hashlib.sha256(data).hexdigest()
        current = tmp / MANIFEST
        _write_synced(current, json_bytes(digests))
        _fsync_dir(tmp)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        what = tmp.name[len(TMP_PREFIX) :]
        raise named_os_error(err, current, f"; {what} was not written, {intact}") from None


def _intact_note(root: Path) -> str:
    dirs = _step_dirs(root)
    return f"the last checkpoint {dirs[-1].name} is intact" if dirs else "no checkpoint yet"


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
    tmp = root / (TMP_PREFIX + final.name)
    files = _weight_files(run_config, model_state, ema_state)
    files[STATE_FILE] = lambda: _torch_bytes(trainer_state)
    _write_dir(tmp, files, _intact_note(root))
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


def step_checkpoints(run_dir: Path | str) -> list[Path]:
    """The `step_*` checkpoint directories of a run, oldest first."""
    return _step_dirs(Path(run_dir) / CHECKPOINTS)


def _step_dirs(root: Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first (none may lead outside)."""
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if _step_of(p) is not None and p.is_dir()]
    for path in dirs:
        refuse_outside(path, root)
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
    final, old, tmp = root / BEST, root / BEST_OLD, root / (TMP_PREFIX + BEST)
    files = _weight_files(run_config, model_state, ema_state)
    files[VAL_FILE] = lambda: json_bytes({"step": int(step), "val_loss": float(score)})
    _write_dir(tmp, files, "the previous best/ is intact")
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
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_fresh(run_dir: Path, resume: bool) -> None:
    """Refuse to start a new run (`resume=False`) in a directory that holds checkpoints."""
    last = latest_checkpoint(run_dir)
    if last is not None and not resume:
        raise ConfigError(
            f"{run_dir} already holds checkpoints (latest {last.name}); "
            "resume the run or choose a new run directory"
        )


# ----------------------------------------------------------------------------- finding


def best_checkpoint(run_dir: Path | str) -> Path | None:
    """The best-validation checkpoint of a run (`checkpoints/best`), or None if it has none.

    Only runs trained with validation (`TrainConfig.val_every > 0`) have one. It holds
    model/EMA weights, config.json and val.json ({"step", "val_loss"}), but no trainer state.
    """
    root = Path(run_dir) / CHECKPOINTS
    for name in (BEST, BEST_OLD):
        if (root / name / VAL_FILE).is_file():
            refuse_outside(root / name, root)
            return root / name
    return None


def _pointer(root: Path) -> Path | None:
    """The directory `checkpoints/latest` names (None without a pointer); a pointer naming
    anything but a `step_*` directory of this run is refused."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    refuse_outside(pointer, root)
    try:
        name = pointer.read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if _step_of(Path(name)) is None:
        raise DataError(f"{pointer}: does not name a checkpoint of this run (step_<8 digits>)"
                        f"; delete it to use the newest step_ directory")  # fmt: skip
    return root / name


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    """The newest complete checkpoint of a run, or None if it has none.

    Normally the directory named in `checkpoints/latest`; if a newer `step_*` directory exists
    (the run was killed between renaming it into place and updating the pointer), that one.
    """
    root = Path(run_dir) / CHECKPOINTS
    if root.exists():
        refuse_outside(root, Path(run_dir))
    dirs = _step_dirs(root)
    named = _pointer(root)
    if named is not None and named.is_dir():
        if not dirs or (_step_of(named) or 0) >= (_step_of(dirs[-1]) or 0):
            return named
    return dirs[-1] if dirs else None


def named_checkpoint(run_dir: Path | str, name: str) -> Path:
    """The checkpoint `name` of a run: `best`, `latest`, `step_<8 digits>` or a step number."""
    root = Path(run_dir) / CHECKPOINTS
    if name == LATEST:
        found = latest_checkpoint(run_dir)
    elif name == BEST:
        found = best_checkpoint(run_dir)
    else:
        step = int(name) if name.isdigit() else _step_of(Path(name))
        found = None if step is None else root / step_dir_name(step)
        if step is None:
            raise ConfigError(f"checkpoint {name!r}: expected best, latest, step_<8 digits> "
                              "or a step number")  # fmt: skip
    if found is None or not found.is_dir():
        have = [p.name for p in _step_dirs(root)] + ([BEST] if best_checkpoint(run_dir) else [])
        raise ConfigError(f"checkpoint {name!r}: not in {root} "
                          f"(it has: {', '.join(have) or 'none'})")  # fmt: skip
    refuse_outside(found, root)
    return found


def checkpoint_step(ckpt_dir: Path) -> int:
    """Step number of a checkpoint directory (from its name)."""
    step = _step_of(ckpt_dir)
    if step is None:
        raise DataError(f"{ckpt_dir} is not a checkpoint directory (expected step_<8 digits>)")
    return step


def _intact(ckpt_dir: Path) -> bool:
    """Whether every file of a checkpoint is present, intact and readable."""
    try:
        read_checked(ckpt_dir / CONFIG_FILE)
        for name in (MODEL_FILE, EMA_FILE):
            read_tensors(ckpt_dir / name)
        if _step_of(ckpt_dir) is not None:
            read_trainer_state(ckpt_dir)
        else:
            read_best_info(ckpt_dir)
    except DataError:
        return False
    return True


def intact_checkpoints(run_dir: Path | str, *, resumable: bool = False) -> list[Path]:
    """The checkpoints of a run whose files are all present and intact, newest first, `best/`
    last; with `resumable`, only those holding a trainer state (`step_*`)."""
    found = list(reversed(_step_dirs(Path(run_dir) / CHECKPOINTS)))
    best = None if resumable else best_checkpoint(run_dir)
    return [c for c in found + ([best] if best is not None else []) if _intact(c)]
