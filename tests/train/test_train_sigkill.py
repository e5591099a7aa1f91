"""A training process killed with SIGKILL at arbitrary moments resumes bit-exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from genlab.train import latest_checkpoint

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

SCRIPT = """
import sys
sys.path[:0] = [{here!r}, {src!r}]
from _train_models import make_data, make_model, make_overfit, make_overfit_data
from genlab.train import TrainConfig, fit

run_dir, resume = sys.argv[1], sys.argv[2] == "1"
{body}
"""

BODY = """
data, cond = make_data()
cfg = TrainConfig(steps=40, batch_size=16, grad_accum=2, checkpoint_every=3, log_every=2,
                  warmup_steps=5, ema_decay=0.9, keep_checkpoints=2, progress=False)
fit(make_model(), data, cfg, run_dir, cond=cond, resume=resume, run_config={"t": 1})
"""


def _start(script: Path, run: Path, resume: bool, sleep: float) -> subprocess.Popen:
    env = {**os.environ, "GENLAB_TEST_SLEEP": str(sleep), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(run), "1" if resume else "0"]
    return subprocess.Popen(args, env=env)


def _kill_after_checkpoint(
    proc: subprocess.Popen, run: Path, past: str | None, min_step: int = 0
) -> str:
    """SIGKILL `proc` a little after a checkpoint newer than `past` (and at least `min_step`)
    appears; return its name."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = latest_checkpoint(run)
        if last is not None and last.name != past and int(last.name[5:]) >= min_step:
            time.sleep(0.013)  # land somewhere in the following steps or checkpoint write
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return last.name
        assert proc.poll() is None, "training finished before it could be killed"
        time.sleep(0.002)
    raise AssertionError("no checkpoint appeared")


def run_killed_and_reference(
    tmp_path: Path, body: str, kills: int = 2, min_step: int = 0, reference: bool = True
) -> tuple[Path, Path | None]:
    """Run the training `body` uninterrupted (ref) and with `kills` SIGKILLs + resumes (run).

    The first kill lands just after the first checkpoint of step >= `min_step`. With
    `reference=False` the caller provides the uninterrupted run itself (returns None for it).
    """
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(here=str(HERE), src=str(SRC), body=body))
    ref = _start(script, tmp_path / "ref", resume=False, sleep=0.0) if reference else None
    run = tmp_path / "run"
    killed: list[str] = []
    for k in range(kills):
        proc = _start(script, run, k > 0, 0.01)
        killed.append(_kill_after_checkpoint(proc, run, killed[-1] if killed else None, min_step))
    assert all(int(a[5:]) < int(b[5:]) for a, b in zip(killed[:-1], killed[1:], strict=True))
    assert _start(script, run, True, 0.0).wait() == 0
    if ref is None:
        return run, None
    assert ref.wait() == 0
    return run, tmp_path / "ref"


def assert_same_files(dir_a: Path, dir_b: Path, names=("model.safetensors", "ema.safetensors")):
    for name in names:
        a, b = load_file(str(dir_a / name)), load_file(str(dir_b / name))
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in b), name


def test_sigkill_and_resume_is_bit_exact(tmp_path) -> None:
    run, ref = run_killed_and_reference(tmp_path, BODY)
    final_run, final_ref = latest_checkpoint(run), latest_checkpoint(ref)
    assert final_run.name == final_ref.name == "step_00000040"
    assert_same_files(final_run, final_ref)
    steps = [line.split(",")[0] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == 20
