"""Validation: the carved split, early stopping, `best/`, RNG isolation and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_models import (
    Crash,
    LinearRegression,
    NoisyMLP,
    make_data,
    make_model,
    make_overfit,
    make_overfit_data,
)
from pydantic import ValidationError
from safetensors.torch import load_file
from test_train_sigkill import assert_same_files, run_killed_and_reference

from genlab.errors import ConfigError
from genlab.train import (
    TrainConfig,
    best_checkpoint,
    fit,
    latest_checkpoint,
    split_validation,
    validation_score,
)
from genlab.train import checkpoint as ckpt

# Overfit (a big MLP on 16 noisy points) has its best validation score early, then gets worse
OVERFIT = dict(steps=300, batch_size=8, grad_accum=2, lr=3e-3, warmup_steps=5, ema_decay=0.5,
               checkpoint_every=3, log_every=2, keep_checkpoints=2, val_fraction=1 / 3,
               val_every=4, patience=5, select="best", progress=False)  # fmt: skip
# not reproduced across a resume: timings, and the window-mean loss (its window restarts)
VOLATILE = ("elapsed", "steps_per_s", "loss")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _untimed(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in _records(run)]


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(row) for row in x.tolist()}


@pytest.fixture(scope="module")
def overfit_ref(tmp_path_factory) -> tuple[Path, object]:
    run = tmp_path_factory.mktemp("overfit") / "run"
    model = make_overfit()
    result = fit(model, make_overfit_data(), TrainConfig(**OVERFIT), run)
    return run, result, model


def test_split_is_deterministic_disjoint_and_covering() -> None:
    train, val = split_validation(50, 0.2, seed=3)
    again = split_validation(50, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert len(val) == 10 and len(train) == 40
    assert not set(train.tolist()) & set(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(range(50))
    assert not torch.equal(split_validation(50, 0.2, seed=4)[1], val)
    assert len(split_validation(3, 0.01, 0)[1]) == 1 and len(split_validation(3, 0.99, 0)[1]) == 2
    with pytest.raises(ConfigError):
        split_validation(1, 0.5, 0)


class Spy(LinearRegression):
    """Records the rows it sees in train mode (training) and in eval mode (validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[bool, set] = {True: set(), False: set()}

    def loss(self, x, cond=None):
        self.seen[self.training].update(_rows(x))
        return super().loss(x, cond)


def test_fit_validates_on_a_carved_part_of_the_training_data_only(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(30, 3, generator=gen, dtype=torch.float64)  # (N, 3)
    cfg = TrainConfig(steps=12, batch_size=4, val_every=3, val_fraction=0.3, seed=5,
                      progress=False)  # fmt: skip
    train_idx, val_idx = split_validation(30, 0.3, seed=5)
    passed = []
    spy = Spy()
    fit(spy, data, cfg, tmp_path / "a", val_fn=lambda m, x, c: passed.append(x) or 0.0)
    assert all(torch.equal(x, data[val_idx]) for x in passed) and len(passed) == 4
    spy = Spy()
    fit(spy, data, cfg, tmp_path / "b")  # default score: model.loss in eval mode
    assert spy.seen[False] == _rows(data[val_idx])
    assert spy.seen[True] == _rows(data[train_idx])  # 48 draws cover the 21 training rows
    assert not spy.seen[True] & spy.seen[False]
    # explicit validation data: all of `data` is trained on, val_fraction is not used
    spy, extra = Spy(), torch.randn(5, 3, generator=gen, dtype=torch.float64)
    fit(spy, data, cfg, tmp_path / "c", val_data=extra)
    assert spy.seen[True] == _rows(data) and spy.seen[False] == _rows(extra)


def test_validation_score_is_seeded_and_side_effect_free() -> None:
    data, cond = make_data()
    model = make_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    a = validation_score(model, data, cond, batch_size=16, seed=5)
    assert validation_score(model, data, cond, batch_size=16, seed=5) == a
    assert validation_score(model, data, cond, batch_size=16, seed=6) != a  # stochastic loss
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    torch.manual_seed(5)
    with torch.no_grad():
        expected = torch.cat([model.loss(data[i : i + 16], cond[i : i + 16])
                              for i in range(0, 64, 16)]).double().mean()  # fmt: skip
    assert a == pytest.approx(float(expected), rel=1e-6)
    # with an EMA: scores the shadow weights, then puts the live weights back exactly
    from genlab.train import EMA

    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.out.bias.add_(1.0)
    moved = {k: v.clone() for k, v in model.state_dict().items()}
    assert validation_score(model, data, cond, batch_size=16, seed=5, ema=ema) == a
    assert all(torch.equal(v, moved[k]) for k, v in model.state_dict().items())
    assert not torch.equal(moved["out.bias"], before["out.bias"])


def test_validation_does_not_perturb_training(tmp_path) -> None:
    """Same weights, losses and final global RNG state as a run without validation."""
    data, cond = make_data()
    base = dict(steps=12, batch_size=16, log_every=1, checkpoint_every=5, warmup_steps=4,
                ema_decay=0.9, val_fraction=0.25, progress=False)  # fmt: skip
    runs = {}
    for name, extra in [("plain", {}), ("ema", {"val_every": 2}),
                        ("raw", {"val_every": 3, "val_use_ema": False})]:  # fmt: skip
        result = fit(make_model(), data, TrainConfig(**base, **extra), tmp_path / name, cond=cond)
        losses = [(r["step"], r["loss"]) for r in _records(tmp_path / name) if "loss" in r]
        runs[name] = (result, torch.get_rng_state(), losses)
    ref, ref_rng, ref_losses = runs["plain"]
    assert ref.best_step is None and not ref.stopped_early
    for name in ("ema", "raw"):
        result, rng, losses = runs[name]
        assert result.steps == 12 and result.best_step is not None
        assert_same_files(result.checkpoint, ref.checkpoint)
        assert torch.equal(rng, ref_rng) and losses == ref_losses
    ema_vals = {r["step"]: r["val_loss"] for r in _records(tmp_path / "ema") if "val_loss" in r}
    raw_vals = {r["step"]: r["val_loss"] for r in _records(tmp_path / "raw") if "val_loss" in r}
    assert sorted(ema_vals) == [2, 4, 6, 8, 10, 12] and sorted(raw_vals) == [3, 6, 9, 12]
    assert ema_vals[6] != raw_vals[6]  # EMA weights were scored, not the raw ones


def test_early_stopping_selects_the_best_validation_step(tmp_path, overfit_ref) -> None:
    run, result, model = overfit_ref
    cfg = TrainConfig(**OVERFIT)
    vals = {r["step"]: r["val_loss"] for r in _records(run) if "val_loss" in r}
    assert sorted(vals) == list(range(4, result.steps + 1, 4))
    best_step = min(vals, key=vals.get)
    assert result.stopped_early and result.steps < cfg.steps
    assert result.best_step == best_step and result.best_val == vals[best_step]
    assert result.steps == best_step + cfg.patience * cfg.val_every
    assert vals[result.steps] > vals[best_step]  # it did overfit
    last = _records(run)[-1]
    assert last["step"] == result.steps and last["best_step"] == best_step
    assert last["best_val_loss"] == vals[best_step] and "loss" in last
    best = best_checkpoint(run)
    assert result.checkpoint == best == run / "checkpoints" / "best"
    assert ckpt.read_best_info(best) == {"step": best_step, "val_loss": vals[best_step]}
    assert latest_checkpoint(run).name == ckpt.step_dir_name(result.steps)
    saved = load_file(str(best / ckpt.MODEL_FILE))  # select="best": the model holds them
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    # best/ survives pruning: only keep_checkpoints step directories are left
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    kept = sorted({*range(3, result.steps + 1, 3), result.steps})[-2:]
    assert names == ["best", "latest", *[ckpt.step_dir_name(s) for s in kept]]
    assert best_step < kept[0]
    # best/ holds exactly what a run without validation has after best_step steps
    plain_cfg = {**OVERFIT, "steps": best_step, "val_every": 0, "patience": 0, "select": "last"}
    plain = fit(make_overfit(), make_overfit_data(), TrainConfig(**plain_cfg), tmp_path / "p")
    assert_same_files(plain.checkpoint, best)


def _scripted(scores: list[float], calls: list[int]):
    def val_fn(model, x, cond) -> float:
        calls.append(1)
        return scores[len(calls) - 1]

    return val_fn


def test_patience_bookkeeping_survives_resume_and_best_is_never_pruned(tmp_path) -> None:
    data, cond = make_data()
    base = dict(steps=30, batch_size=16, log_every=4, checkpoint_every=1, keep_checkpoints=1,
                val_every=2, patience=3, val_fraction=0.25, progress=False)  # fmt: skip
    scores, calls = [5.0, 3.0, 2.0, 2.5, 2.0, 4.0, 1.0, 9.0], []
    run = tmp_path / "run"
    result = fit(make_model(), data, TrainConfig(**base), run, cond=cond,
                 val_fn=_scripted(scores, calls))  # fmt: skip
    # evals at 2..12: best 2.0 at step 6; 2.5, 2.0 (not lower) and 4.0 use up the patience
    assert (result.steps, result.best_step, result.best_val) == (12, 6, 2.0)
    assert result.stopped_early and len(calls) == 6
    assert result.checkpoint.name == "step_00000012"  # select="last"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best", "latest", "step_00000012"]  # fmt: skip
    assert ckpt.read_best_info(best_checkpoint(run)) == {"step": 6, "val_loss": 2.0}
    records = {r["step"]: r for r in _records(run)}
    off_log_step = {"step": 6, "val_loss": 2.0, "best_val_loss": 2.0, "best_step": 6}
    assert records[6] == {**off_log_step, "elapsed": records[6]["elapsed"]}
    assert (records[8]["val_loss"], records[8]["best_step"], records[8]["loss"]) == (
        2.5, 6, records[8]["loss"])  # fmt: skip
    # resuming a run that stopped does nothing ...
    again = fit(make_model(), data, TrainConfig(**base), run, cond=cond, resume=True,
                val_fn=_scripted(scores, calls))  # fmt: skip
    assert (again.steps, again.stopped_early, again.best_step, len(calls)) == (12, True, 6, 6)
    # ... unless the patience grows: the count of bad evaluations (3) carries on
    more = fit(make_model(), data, TrainConfig(**{**base, "patience": 4}), run, cond=cond,
               resume=True, val_fn=_scripted([9.0], []))  # fmt: skip
    assert (more.steps, more.best_step, more.stopped_early) == (14, 6, True)
    more = fit(make_model(), data, TrainConfig(**{**base, "patience": 5}), run, cond=cond,
               resume=True, val_fn=_scripted([1.0] + [9.0] * 5, []))  # fmt: skip
    assert (more.steps, more.best_step, more.best_val, more.stopped_early) == (26, 16, 1.0, True)
    assert ckpt.read_best_info(best_checkpoint(run)) == {"step": 16, "val_loss": 1.0}


def test_crash_while_replacing_best_then_resume_is_exact(tmp_path, monkeypatch, overfit_ref):
    ref_run, ref_result, _ = overfit_ref
    original, calls = ckpt.os.rename, []

    def rename(src, dst):  # die between moving the old best/ away and moving the new one in
        if Path(dst).name == ckpt.BEST and (Path(dst).parent / ckpt.BEST_OLD).exists():
            calls.append(1)
            if len(calls) == 2:
                raise Crash("killed inside save_best")
        return original(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        fit(make_overfit(), make_overfit_data(), TrainConfig(**OVERFIT), run)
    monkeypatch.setattr(ckpt.os, "rename", original)
    assert not (run / "checkpoints" / "best").exists()
    assert best_checkpoint(run).name == ckpt.BEST_OLD  # readers still find the previous best
    result = fit(make_overfit(), make_overfit_data(), TrainConfig(**OVERFIT), run, resume=True)
    assert (result.steps, result.best_step) == (ref_result.steps, ref_result.best_step)
    assert result.best_val == ref_result.best_val
    assert_same_files(result.checkpoint, ref_result.checkpoint)
    assert_same_files(latest_checkpoint(run), latest_checkpoint(ref_run))
    assert (result.checkpoint / "val.json").read_bytes() == (
        ref_result.checkpoint / "val.json").read_bytes()  # fmt: skip
    assert not (run / "checkpoints" / ckpt.BEST_OLD).exists()
    assert _untimed(run) == _untimed(ref_run)


SIGKILL_BODY = f"""
cfg = TrainConfig(**{OVERFIT!r})
result = fit(make_overfit(), make_overfit_data(), cfg, run_dir, resume=resume,
             run_config={{"t": 1}})
assert result.stopped_early
"""


def test_sigkill_with_validation_resumes_bit_exactly(tmp_path, overfit_ref) -> None:
    # one kill (each process start costs seconds), after evaluations at steps 4 and 8; the
    # uninterrupted run is the in-process one of the fixture (same config, same data)
    run, _ = run_killed_and_reference(tmp_path, SIGKILL_BODY, kills=1, min_step=9,
                                      reference=False)  # fmt: skip
    ref = overfit_ref[0]
    assert latest_checkpoint(run).name == latest_checkpoint(ref).name
    assert_same_files(latest_checkpoint(run), latest_checkpoint(ref))
    assert_same_files(best_checkpoint(run), best_checkpoint(ref))
    assert (best_checkpoint(run) / "val.json").read_bytes() == (
        best_checkpoint(ref) / "val.json").read_bytes()  # fmt: skip
    assert _untimed(run) == _untimed(ref)
    assert any("val_loss" in r for r in _records(run))


def test_validation_config_errors(tmp_path) -> None:
    bad_values = [  # (values, the field the error must name)
        ({"patience": 2}, "patience"),
        ({"select": "best"}, "select"),
        ({"select": "first", "val_every": 1}, "select"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_every": -1}, "val_every"),
    ]
    for bad, field in bad_values:
        with pytest.raises(ValidationError, match=field):
            TrainConfig(**bad)
    data, cond = make_data()
    with pytest.raises(ConfigError, match="val_data or train.val_fraction"):
        fit(make_model(), data, TrainConfig(steps=2, val_every=1, progress=False), tmp_path / "x")
    base = dict(steps=3, batch_size=16, val_every=1, val_fraction=0.25, progress=False)
    fit(make_model(), data, TrainConfig(**base), tmp_path / "run", cond=cond)
    for name, value in [("val_seed", 1), ("val_fraction", 0.5), ("val_use_ema", False)]:
        cfg = TrainConfig(**{**base, "steps": 6, name: value})
        with pytest.raises(ConfigError, match=f"train.{name}"):
            fit(make_model(), data, cfg, tmp_path / "run", cond=cond, resume=True)


def test_time_budget_stops_validates_and_resumes(tmp_path) -> None:
    data, cond = make_data()
    cfg = TrainConfig(steps=10_000, batch_size=16, log_every=1000, checkpoint_every=1000,
                      val_every=1000, val_fraction=0.25, select="best", progress=False,
                      max_seconds=0.3, time_clock="wall")  # fmt: skip
    model = NoisyMLP()
    model.sleep = 0.02  # each step takes >= 20 ms of wall time
    result = fit(model, data, cfg, tmp_path / "run", cond=cond)
    assert result.stop_reason == "time" and not result.stopped_early
    assert 5 <= result.steps <= 0.3 / 0.02 + 1  # about 15 steps of 20 ms, never far beyond
    state = ckpt.read_trainer_state(ckpt.latest_checkpoint(tmp_path / "run"))
    assert state["step"] == result.steps and state["train_seconds"] >= 0.3
    # validation ran at the stopping step although it is no multiple of val_every
    assert result.best_step == result.steps and result.checkpoint.name == "best"
    # a resumed run with the budget used up returns at once; a larger budget continues
    again = fit(NoisyMLP(), data, cfg, tmp_path / "run", cond=cond, resume=True)
    assert again.steps == result.steps and again.stop_reason == "time"
    more = TrainConfig(**{**cfg.to_dict(), "max_seconds": 0.0, "steps": result.steps + 3})
    longer = fit(NoisyMLP(), data, more, tmp_path / "run", cond=cond, resume=True)
    assert longer.steps == result.steps + 3 and longer.stop_reason == "steps"


def test_time_budget_config_errors() -> None:
    with pytest.raises(ValidationError, match="max_seconds"):
        TrainConfig(max_seconds=-1.0)
    with pytest.raises(ValidationError, match="time_clock"):
        TrainConfig(time_clock="sundial")
