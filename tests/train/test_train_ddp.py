"""Data-parallel training (gloo, 2 processes): the same steps as one process, faults, resume.

A 2-process run with per-rank batch B/2 computes the steps of a 1-process run with batch B
and the same `train.shards`: each rank computes one shard per step, DDP's average of two
gradients each scaled by 1/1 equals the single process's sum of the two scaled by 1/2
(powers of two scale exactly and two summands commute), so with one micro-batch per step
the weights are equal bit for bit. With accumulation the four shard gradients are summed in
another order, so they agree to float64 round-off. Every process, this one included
(tests/conftest.py), uses one intra-op thread, so the kernels round alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _ddp_cases import FAMILIES, train_all
from _train_models import LinearRegression, make_data
from cli_helpers import assert_one_line_error, run_cli
from safetensors.torch import load_file
from test_train_sigkill import assert_same_files

from genlab.errors import ConfigError
from genlab.train import TrainConfig, World, fit, latest_checkpoint
from genlab.train.distributed import resolve_shards

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]), "OMP_NUM_THREADS": "1"}


def _weights(ckpt: Path) -> list[dict[str, torch.Tensor]]:
    return [load_file(str(ckpt / name)) for name in ("model.safetensors", "ema.safetensors")]


def test_two_processes_equal_one_process_with_the_same_shards(tmp_path) -> None:
    script = str(HERE / "_ddp_cases.py")
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        script,
        str(tmp_path / "ddp"),
    ]
    job = subprocess.Popen(torchrun, env=ENV, stdout=subprocess.DEVNULL)
    train_all(tmp_path / "one")  # meanwhile, the same runs in this process
    assert job.wait() == 0
    for case in ("noisy", *FAMILIES):  # one micro-batch per step: bit for bit
        one, ddp = (latest_checkpoint(tmp_path / run / case) for run in ("one", "ddp"))
        assert one.name == ddp.name
        assert_same_files(one, ddp)
    best = [tmp_path / run / "accumulated" / "checkpoints" / "best" for run in ("one", "ddp")]
    one, ddp = (_weights(path) for path in best)
    for a, b in zip(one, ddp, strict=True):
        for name in a:
            assert a[name].dtype == torch.float64
            torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-14)


def test_shards_of_a_deterministic_loss_equal_one_stream(tmp_path) -> None:
    """Without noise the split cannot matter: shards 2 and 4 give the weights of shards 1."""
    data, _ = make_data()
    data = torch.cat([data, data.sum(1, keepdim=True)], 1).double()  # (x1, x2, y)
    results = []
    for shards in (1, 2, 4):
        cfg = TrainConfig(steps=5, batch_size=16, shards=shards, lr=0.05, grad_clip=0.5,
                          warmup_steps=2, ema_decay=0.9, progress=False)  # fmt: skip
        model = LinearRegression()
        fit(model, data, cfg, tmp_path / str(shards))
        results.append(model.state_dict())
    for other in results[1:]:
        for name, value in results[0].items():
            torch.testing.assert_close(other[name], value, rtol=1e-12, atol=1e-14)


def test_resolve_shards() -> None:
    cfg = TrainConfig(batch_size=12)
    assert resolve_shards(cfg, None, World(0, 1)).shards == 1  # a single stream
    assert resolve_shards(cfg, None, World(1, 3)).shards == 3  # one shard per process
    assert resolve_shards(cfg, {"shards": 2}, World(0, 1)).shards == 2  # the checkpoint's
    assert resolve_shards(cfg, {}, World(0, 1)).shards == 1  # from before sharding
    with pytest.raises(ConfigError, match="train.shards = 2 .*over 3 processes"):
        resolve_shards(cfg, {"shards": 2}, World(0, 3))
    with pytest.raises(ConfigError, match="train.batch_size = 12 is not a multiple of"):
        resolve_shards(cfg.model_copy(update={"shards": 8}), None, World(0, 2))


def test_resume_refuses_processes_that_cannot_share_the_shards(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(_TINY)
    run = tmp_path / "run"
    flags = ["--set", "train.shards=2", "--set", "train.steps=2"]
    code, _, err = run_cli(["train", config, "--out", run, *flags], capsys)
    assert code == 0, err
    before = _weights(latest_checkpoint(run))
    code, _, err = run_cli(["train", config, "--out", run, "--resume", "--nproc", "3"], capsys)
    assert_one_line_error(code, err, "train.shards = 2", "3 processes")
    assert all(torch.equal(a[k], b[k]) for a, b in zip(before, _weights(latest_checkpoint(run)),
                                                        strict=True) for k in a)  # fmt: skip


_TINY = """
[data]
name = "moons"
n_train = 64
n_test = 16
[model]
preset = "flow-matching"
[net]
name = "mlp"
hidden = 16
depth = 2
time_dim = 8
[train]
steps = 150
batch_size = 16
warmup_steps = 5
ema_decay = 0.9
checkpoint_every = 25
log_every = 25
progress = false
"""


def _genlab(run: Path, config: Path, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "genlab", "train", str(config), "--out", str(run), *flags]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _rank_pid(run: Path, rank: int) -> int | None:
    """The pid of the worker of rank `rank` training into `run` (found through /proc)."""
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in env and str(run).encode() in cmdline:
            return int(proc.name)
    return None


def _kill_rank_1_after_checkpoint(jobs: dict[Path, subprocess.Popen]) -> dict[Path, float]:
    """SIGKILL the rank-1 worker of each job as soon as its run has a checkpoint; return the
    time of each kill."""
    killed: dict[Path, float] = {}
    deadline = time.monotonic() + 300
    while len(killed) < len(jobs):
        for run in jobs:
            if run in killed or latest_checkpoint(run) is None:
                continue
            pid = _rank_pid(run, 1)
            assert pid is not None, f"{run}: no worker of rank 1"
            os.kill(pid, signal.SIGKILL)
            killed[run] = time.monotonic()
        assert all(job.poll() is None for run, job in jobs.items() if run not in killed)
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return killed


def test_kill_one_rank_then_restart_or_resume(tmp_path, capsys) -> None:
    """Killing rank 1 stops the job within seconds naming the rank; with --max-restarts the
    job resumes by itself, and --resume continues on one process: both end with the weights
    of an uninterrupted run (one process, the same shards: the first test shows it equals
    the 2-process run)."""
    config = tmp_path / "tiny.toml"
    config.write_text(_TINY)
    restarted, stopped = tmp_path / "restarted", tmp_path / "stopped"
    jobs = {restarted: _genlab(restarted, config, "--nproc", "2", "--max-restarts", "1"),
            stopped: _genlab(stopped, config, "--nproc", "2")}  # fmt: skip
    killed_at = _kill_rank_1_after_checkpoint(jobs)[stopped]
    _, err = jobs[stopped].communicate(timeout=60)  # no hang: torchrun stops the other rank
    assert jobs[stopped].returncode == 1 and time.monotonic() - killed_at < 60
    assert "rank 1" in err.splitlines()[-1] and "SIGKILL" in err.splitlines()[-1]
    code, _, err = run_cli(["train", config, "--out", stopped, "--resume"], capsys)
    assert code == 0, err
    ref = tmp_path / "ref"
    code, _, err = run_cli(["train", config, "--out", ref, "--set", "train.shards=2"], capsys)
    assert code == 0, err
    assert jobs[restarted].wait(timeout=300) == 0, jobs[restarted].stderr.read()
    final = latest_checkpoint(ref)
    assert final is not None and final.name == "step_00000150"
    for run in (restarted, stopped):
        assert_same_files(latest_checkpoint(run), final)
        steps = [line.split(",")[0] for line in (run / "metrics.jsonl").open()]
        assert len(steps) == len(set(steps)) == 6
