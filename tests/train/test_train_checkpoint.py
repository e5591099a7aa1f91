"""Checkpoints: exact resume after crashes at any point, divergence, pruning, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_models import Crash, make_data, make_failing, make_model
from safetensors.torch import load_file

from genlab.errors import ConfigError, DataError, TrainingDiverged
from genlab.train import TrainConfig, fit, latest_checkpoint, load_weights
from genlab.train import checkpoint as ckpt

CFG = dict(steps=14, batch_size=16, checkpoint_every=3, log_every=1, warmup_steps=4,
           ema_decay=0.9, progress=False)  # fmt: skip


def _fit(run_dir: Path, model=None, *, resume: bool = False, **overrides):
    data, cond = make_data()
    cfg = TrainConfig(**{**CFG, **overrides})
    return fit(model or make_model(), data, cfg, run_dir, cond=cond, resume=resume,
               run_config={"name": "tiny"})  # fmt: skip


def assert_same_weights(ckpt_a: Path, ckpt_b: Path) -> None:
    for name in (ckpt.MODEL_FILE, ckpt.EMA_FILE):
        a, b = load_file(str(ckpt_a / name)), load_file(str(ckpt_b / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    return _fit(run).checkpoint


@pytest.mark.parametrize(
    ("target", "at"),
    [
        ("_write_synced", 3),
        ("_write_synced", 9),
        ("_write_synced", 11),
        ("_write_synced", 14),
        ("_fsync_dir", 4),
        ("atomic_write", 3),
        ("prune", 2),
    ],  # fmt: skip
)
def test_crash_during_checkpoint_write_then_resume_is_exact(
    tmp_path, monkeypatch, reference, target, at
) -> None:
    """A crash at the at-th call of a checkpoint helper leaves a run that resumes exactly."""
    original, calls = getattr(ckpt, target), []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise Crash(f"{target} call {at}")
        return original(*args, **kwargs)

    monkeypatch.setattr(ckpt, target, crashing)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        _fit(run)
    monkeypatch.setattr(ckpt, target, original)
    result = _fit(run, resume=True)
    assert result.steps == CFG["steps"]
    assert_same_weights(result.checkpoint, reference)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(ckpt.TMP_PREFIX)]


@pytest.mark.parametrize("crash_step", [2, 5, 7, 13])
def test_resume_loses_at_most_checkpoint_every(tmp_path, reference, crash_step) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        _fit(run, make_failing(crash_step, "crash"))
    last = latest_checkpoint(run)
    completed = crash_step - 1
    saved_step = torch.load(last / ckpt.STATE_FILE, weights_only=True)["step"] if last else 0
    assert completed - CFG["checkpoint_every"] < saved_step <= completed
    result = _fit(run, resume=True)  # continues from saved_step
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps_seen = [m["step"] for m in metrics]
    assert steps_seen == list(range(1, CFG["steps"] + 1))  # no duplicates, no gaps
    assert_same_weights(result.checkpoint, reference)


def test_half_written_temporaries_are_ignored(tmp_path, reference) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        _fit(run, make_failing(8, "crash"))  # checkpoints at steps 3 and 6
    root = run / "checkpoints"
    fake = root / (ckpt.TMP_PREFIX + "step_00000009")
    fake.mkdir()
    (fake / ckpt.MODEL_FILE).write_bytes(b"half a safetensors file")
    (root / (ckpt.TMP_PREFIX + "latest")).write_text("step_00000009")
    (run / "metrics.jsonl").open("a").write('{"step": 7, "lo')  # a line cut by the kill
    assert latest_checkpoint(run).name == "step_00000006"
    result = _fit(run, resume=True)
    assert not fake.exists()
    assert_same_weights(result.checkpoint, reference)


def test_newer_dir_than_pointer_wins(tmp_path) -> None:
    run = tmp_path / "run"
    _fit(run, steps=6)
    root = run / "checkpoints"
    (root / "latest").write_text("step_00000003")  # as if killed before the pointer update
    assert latest_checkpoint(run).name == "step_00000006"
    (root / "latest").unlink()
    assert latest_checkpoint(run).name == "step_00000006"
    assert latest_checkpoint(tmp_path / "empty") is None


@pytest.mark.parametrize("mode", ["nan", "inf_grad"])
def test_divergence_raises_and_keeps_last_checkpoint(tmp_path, mode) -> None:
    run, snapshots = tmp_path / "run", {}

    def on_log(record: dict) -> None:
        if record["step"] == 7:
            snapshots["files"] = _snapshot(run / "checkpoints")

    data, cond = make_data()
    cfg = TrainConfig(**CFG)
    with pytest.raises(TrainingDiverged) as err:
        fit(make_failing(8, mode), data, cfg, run, cond=cond, on_log=on_log)
    what = "loss became nan" if mode == "nan" else "gradient norm became inf"
    assert f"{what} at step 8; last good checkpoint: " in str(err.value)
    assert str(run / "checkpoints" / "step_00000006") in str(err.value)
    assert _snapshot(run / "checkpoints") == snapshots["files"]


def test_pruning_config_and_load_weights(tmp_path) -> None:
    run = tmp_path / "run"
    result = _fit(run, keep_checkpoints=2)
    root = run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000012", "step_00000014"]
    assert (root / "latest").read_text() == "step_00000014"
    assert json.loads((run / "config.json").read_text()) == {"name": "tiny"}
    assert json.loads((result.checkpoint / "config.json").read_text()) == {"name": "tiny"}
    for ema in (True, False):
        model = load_weights(result.checkpoint, make_model(seed=5), ema=ema)
        saved = load_file(str(result.checkpoint / (ckpt.EMA_FILE if ema else ckpt.MODEL_FILE)))
        assert torch.equal(model.out.weight, saved["out.weight"])


def test_missing_or_corrupt_files_are_data_errors(tmp_path) -> None:
    run = tmp_path / "run"
    last = _fit(run, steps=3).checkpoint
    (last / ckpt.EMA_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="ema.safetensors is corrupt"):
        load_weights(last, make_model())
    (last / ckpt.MODEL_FILE).unlink()
    with pytest.raises(DataError, match="model.safetensors is missing"):
        load_weights(last, make_model(), ema=False)
    (last / ckpt.STATE_FILE).write_bytes(b"not a zip")
    with pytest.raises(DataError, match="trainer_state.pt is corrupt"):
        _fit(run, resume=True, steps=6)


def test_fresh_start_refuses_existing_run_and_resume_checks_config(tmp_path) -> None:
    run = tmp_path / "run"
    _fit(run, steps=3)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        _fit(run, steps=6)
    with pytest.raises(ConfigError, match="train.seed"):
        _fit(run, resume=True, steps=6, seed=1)
    assert _fit(run, resume=True, steps=6).steps == 6


def test_resume_reads_grad_clip_none_of_older_checkpoints_as_no_clipping(tmp_path) -> None:
    """Older versions saved grad_clip = None for "no clipping"; it now reads as 0."""
    run = tmp_path / "run"
    _fit(run, steps=3, grad_clip=0)
    last = latest_checkpoint(run)
    state = ckpt.read_trainer_state(last)
    state["train_config"]["grad_clip"] = None
    torch.save(state, last / ckpt.STATE_FILE)
    (last / ckpt.MANIFEST).unlink()  # older versions wrote no sha256.json either
    with pytest.raises(ConfigError, match="train.grad_clip"):
        _fit(run, resume=True, steps=6, grad_clip=1.0)
    assert _fit(run, resume=True, steps=6, grad_clip=0).steps == 6
    assert TrainConfig.from_dict(state["train_config"]).grad_clip == 0
