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
from _train_models import make_data, make_model
from genlab.train import TrainConfig, fit

run_dir, resume = sys.argv[1], sys.argv[2] == "1"
data, cond = make_data()
cfg = TrainConfig(steps=40, batch_size=16, grad_accum=2, checkpoint_every=3, log_every=2,
                  warmup_steps=5, ema_decay=0.9, keep_checkpoints=2, progress=False)
fit(make_model(), data, cfg, run_dir, cond=cond, resume=resume, run_config={{"t": 1}})
"""


def _start(script: Path, run: Path, resume: bool, sleep: float) -> subprocess.Popen:
    env = {**os.environ, "GENLAB_TEST_SLEEP": str(sleep), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(run), "1" if resume else "0"]
    return subprocess.Popen(args, env=env)


def _kill_after_checkpoint(proc: subprocess.Popen, run: Path, past: str | None) -> str:
    """SIGKILL `proc` a little after a checkpoint newer than `past` appears; return its name."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = latest_checkpoint(run)
        if last is not None and last.name != past:
            time.sleep(0.013)  # land somewhere in the following steps or checkpoint write
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return last.name
        assert proc.poll() is None, "training finished before it could be killed"
        time.sleep(0.002)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_and_resume_is_bit_exact(tmp_path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(here=str(HERE), src=str(SRC)))
    reference = _start(script, tmp_path / "ref", resume=False, sleep=0.0)
    run = tmp_path / "run"
    first = _kill_after_checkpoint(_start(script, run, False, 0.01), run, None)
    second = _kill_after_checkpoint(_start(script, run, True, 0.01), run, first)
    assert int(second[5:]) > int(first[5:])
    assert _start(script, run, True, 0.0).wait() == 0
    assert reference.wait() == 0
    final_run, final_ref = latest_checkpoint(run), latest_checkpoint(tmp_path / "ref")
    assert final_run.name == final_ref.name == "step_00000040"
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(final_run / name)), load_file(str(final_ref / name))
        assert all(torch.equal(a[k], b[k]) for k in b), name
    steps = [line.split(",")[0] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == 20
