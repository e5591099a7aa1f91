"""Checkpoints under failure: full disks, refused writes, broken files, pointers and links that
lead elsewhere. Earlier checkpoints must survive byte for byte, and every error names a file."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from _train_models import make_data, make_model
from run_helpers import snapshot

from genlab.errors import ConfigError, DataError
from genlab.train import TrainConfig, fit
from genlab.train import checkpoint as ckpt

CFG = dict(steps=4, batch_size=16, checkpoint_every=2, log_every=1, warmup_steps=1,
           progress=False)  # fmt: skip


def _fit(run_dir: Path, *, resume: bool = False, **overrides) -> Path:
    data, cond = make_data()
    cfg = TrainConfig(**{**CFG, **overrides})
    return fit(make_model(), data, cfg, run_dir, cond=cond, resume=resume,
               run_config={"name": "tiny"}).checkpoint  # fmt: skip


def fail_writes_of(monkeypatch: pytest.MonkeyPatch, name: str, code: int) -> None:
    """Make the low-level write of files called `name` fail as the OS would with `code`
    (a failed write() carries no file name; the caller must add it)."""
    original = ckpt._write_synced

    def write(path: Path, data: bytes) -> None:
        if path.name in (name, ckpt.TMP_PREFIX + name):
            raise OSError(code, os.strerror(code))
        original(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", write)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with checkpoints at steps 2 and 4 (keep 2)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    _fit(run)
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to / "run", symlinks=True)
    return to / "run"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (ckpt.MODEL_FILE, errno.ENOSPC),
        (ckpt.STATE_FILE, errno.EACCES),
        (ckpt.MANIFEST, errno.ENOSPC),
        (ckpt.LATEST, errno.ENOSPC),
        (ckpt.CONFIG_FILE, errno.EACCES),
    ],  # fmt: skip
)
def test_failed_write_keeps_every_saved_file_and_names_the_file(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, code: int
) -> None:
    run = _copy(trained, tmp_path)
    before = snapshot(run)
    fail_writes_of(monkeypatch, name, code)
    with pytest.raises(OSError) as info:
        _fit(run, resume=True, steps=6)
    err = info.value
    assert err.errno == code and Path(err.filename).name in (name, ckpt.TMP_PREFIX + name)
    assert err.strerror.startswith(os.strerror(code))
    after = snapshot(run)
    # what was saved is untouched; only the log and the new checkpoint may have been added
    assert {k: after[k] for k in before if k != "metrics.jsonl"} == {
        k: v for k, v in before.items() if k != "metrics.jsonl"
    }
    assert after["metrics.jsonl"].startswith(before["metrics.jsonl"])
    assert not [p for p in run.rglob(ckpt.TMP_PREFIX + "*")]  # no temporary is left behind
    if name in (ckpt.MODEL_FILE, ckpt.STATE_FILE, ckpt.MANIFEST):
        assert "step_00000006 was not written, the last checkpoint step_00000004 is intact" \
            in err.strerror  # fmt: skip
    monkeypatch.undo()
    assert ckpt.read_trainer_state(_fit(run, resume=True, steps=6))["step"] == 6


def test_failed_write_of_best_keeps_the_previous_best(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    _fit(run, val_every=2, val_fraction=0.25)
    best = snapshot(run / "checkpoints" / "best")
    fail_writes_of(monkeypatch, ckpt.EMA_FILE, errno.ENOSPC)
    with pytest.raises(OSError, match="the previous best/ is intact"):
        _fit(run, resume=True, steps=40, val_every=2, val_fraction=0.25)
    assert snapshot(run / "checkpoints" / "best") == best


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_broken_weights_name_the_file_and_the_intact_checkpoints(trained, tmp_path, damage):
    run = _copy(trained, tmp_path)
    last = ckpt.latest_checkpoint(run)
    path = last / ckpt.MODEL_FILE
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # a flipped bit inside the weights parses fine: the digest catches it
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    else:
        path.unlink()
    with pytest.raises(ckpt.CorruptCheckpoint) as info:
        _fit(run, resume=True, steps=6)
    assert info.value.path == path and str(path) in str(info.value)
    assert ckpt.intact_checkpoints(run) == [run / "checkpoints" / "step_00000002"]
    assert ckpt.intact_checkpoints(run, resumable=True) == [run / "checkpoints" / "step_00000002"]


@pytest.mark.parametrize("text", [b"../../elsewhere", b"/etc", b"\xff\xfe", b"step_1", b""])
def test_a_pointer_naming_anything_but_a_checkpoint_is_refused(trained, tmp_path, text) -> None:
    run = _copy(trained, tmp_path)
    (run / "checkpoints" / "latest").write_bytes(text)
    with pytest.raises(DataError, match="checkpoints/latest: does not name a checkpoint"):
        ckpt.latest_checkpoint(run)


def test_links_out_of_the_run_are_refused(trained, tmp_path) -> None:
    run = _copy(trained, tmp_path)
    outside = _copy(trained, tmp_path / "other")
    step = run / "checkpoints" / "step_00000004"
    model = step / ckpt.MODEL_FILE
    model.unlink()
    model.symlink_to(outside / "checkpoints" / "step_00000004" / ckpt.MODEL_FILE)
    with pytest.raises(DataError, match="outside the run directory"):
        ckpt.read_tensors(model)
    shutil.rmtree(step)
    step.symlink_to(outside / "checkpoints" / "step_00000004")
    with pytest.raises(DataError, match="step_00000004: resolves to .*outside"):
        ckpt.latest_checkpoint(run)
    step.unlink()
    step.symlink_to(run / "checkpoints" / "step_00000002")  # a link inside the run is harmless
    assert ckpt.latest_checkpoint(run) == step


def test_named_checkpoints(trained) -> None:
    root = trained / "checkpoints"
    assert ckpt.named_checkpoint(trained, "2") == root / "step_00000002"
    assert ckpt.named_checkpoint(trained, "step_00000004") == root / "step_00000004"
    assert ckpt.named_checkpoint(trained, "latest") == root / "step_00000004"
    for bad in ("../x", "step_2", "/etc"):
        with pytest.raises(ConfigError, match="expected best, latest, step_<8 digits>"):
            ckpt.named_checkpoint(trained, bad)
    with pytest.raises(ConfigError, match=r"not in .*it has: step_00000002, step_00000004\)"):
        ckpt.named_checkpoint(trained, "best")


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_checkpoints_keeps_the_last_k(tmp_path, keep) -> None:
    run = tmp_path / "run"
    _fit(run, steps=8, checkpoint_every=2, keep_checkpoints=keep)
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name != "latest")
    assert names == [ckpt.step_dir_name(s) for s in (2, 4, 6, 8)[-keep:]]
