"""Run directories under stress, through the command line: two trainers on one directory,
stale locks, pre-emption, full disks, broken checkpoint files and links leading elsewhere.
Every failure is one line with exit status 2, and nothing already saved changes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli
from run_helpers import snapshot, train_tiny

from genlab.errors import ConfigError
from genlab.runs import lock as run_lock_module
from genlab.runs.lock import LOCK_FILE, Holder, acquire, run_lock
from genlab.train import checkpoint as ckpt

TINY = """
[data]
name = "moons"
n_train = 200
n_test = 50
[model]
preset = "flow-matching"
[net]
hidden = 16
depth = 2
time_dim = 8
[train]
steps = 4
batch_size = 32
warmup_steps = 1
checkpoint_every = 2
log_every = 2
progress = false
[sample]
sampler = "euler"
nfe = 2
n = 20
"""
SRC = str(Path(__file__).parent.parent / "src")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run (checkpoints at steps 2 and 4) with its config `c.toml` beside it."""
    return train_tiny(tmp_path_factory.mktemp("trained"), TINY)


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained run (with `c.toml` beside it)."""
    shutil.copy(trained.parent / "c.toml", tmp_path / "c.toml")
    shutil.copytree(trained, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def _resume(run: Path, capsys, *extra: str) -> tuple[int, str, str]:
    args = ["train", run.parent / "c.toml", "--out", run, "--resume", "--set",
            "train.steps=6", *extra]  # fmt: skip
    return run_cli(args, capsys)


# ----------------------------------------------------------------------------- the lock


def _write_holder(run: Path, **fields: object) -> None:
    me = Holder.me()
    values = {"pid": me.pid, "host": me.host, "started": 0.0, "boot_id": me.boot_id,
              "ticks": me.ticks, **fields}  # fmt: skip
    (run / LOCK_FILE).write_text(json.dumps(values))


def test_a_second_trainer_is_refused_naming_the_holder(run, capsys) -> None:
    held = acquire(run)  # this process holds the lock, as a running trainer would
    try:
        before = snapshot(run)
        code, _, err = _resume(run, capsys)
        assert_one_line_error(code, err, f"{run} is in use", f"pid {os.getpid()} on "
                              f"{socket.gethostname()}, started ")  # fmt: skip
        assert snapshot(run) == before
    finally:
        held.release()
    assert not (run / LOCK_FILE).exists()
    assert _resume(run, capsys)[0] == 0
    assert not (run / LOCK_FILE).exists()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def _ticks_of_init() -> int | None:
    return run_lock_module._start_ticks(1)


@pytest.mark.parametrize(
    ("holder", "taken_over"),
    [({"pid": "dead"}, True),  # its process is gone
     ({"pid": 1, "ticks": -1}, True),  # the pid now belongs to another process
     ({"pid": 1, "boot_id": "an-earlier-boot"}, True),  # the machine rebooted since
     ({"pid": 1, "ticks": "init"}, False),  # a live process (holding no kernel lock)
     ({"host": "elsewhere.example"}, False)],  # another host: cannot tell
)  # fmt: skip
def test_stale_locks_are_taken_over_and_live_or_remote_ones_refused(
    run, capsys, holder: dict, taken_over: bool
) -> None:
    if holder.get("pid") == "dead":
        holder["pid"] = _dead_pid()
    if holder.get("ticks") == "init":
        holder["ticks"] = _ticks_of_init()
    _write_holder(run, **holder)
    code, _, err = _resume(run, capsys)
    if taken_over:
        assert code == 0, err
        assert f"warning: {run / LOCK_FILE}: took over the stale lock of pid {holder.get('pid')}" \
            in err  # fmt: skip
        assert not (run / LOCK_FILE).exists()
    elif "host" in holder:
        assert_one_line_error(code, err, f"locked by pid {os.getpid()} on elsewhere.example",
                              "another host", f"delete {run / LOCK_FILE}")  # fmt: skip
    else:
        assert_one_line_error(code, err, "in use", "pid 1 on")


def test_garbage_in_a_free_lock_file_is_replaced(run, capsys) -> None:
    (run / LOCK_FILE).write_bytes(b"\x00\xff not json")
    assert _resume(run, capsys)[0] == 0
    assert not (run / LOCK_FILE).exists()


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with run_lock(tmp_path / "run") as held:
        assert held is None and not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK: must be an integer"), run_lock(tmp_path):
        pass
    monkeypatch.delenv("RANK")
    with run_lock(tmp_path / "run") as held:
        assert held is not None and (tmp_path / "run" / LOCK_FILE).is_file()
    assert not (tmp_path / "run").exists()  # created by the lock and left empty: removed


def test_the_lock_is_released_when_training_fails(tmp_path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace('name = "moons"', 'name = "points"\npath = "nope.npy"'))
    code, _, err = run_cli(["train", config, "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "nope.npy")
    assert not (tmp_path / "run").exists()


_HOLD = """
import sys, time
from genlab.runs.lock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_pre_empted_holder_releases_or_leaves_a_stale_lock(tmp_path, sig) -> None:
    """SIGTERM releases the lock (exit 143); after SIGKILL the next trainer takes it over."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    lock = tmp_path / LOCK_FILE
    assert lock.exists() == (sig == signal.SIGKILL)
    with pytest.warns(UserWarning, match=f"took over the stale lock of pid {proc.pid}") \
            if lock.exists() else _no_warning(), run_lock(tmp_path):  # fmt: skip
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


class _no_warning:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ----------------------------------------------------------------------------- writes


@pytest.mark.parametrize(("name", "code"), [(ckpt.MODEL_FILE, errno.ENOSPC),
                                           (ckpt.STATE_FILE, errno.EACCES)])  # fmt: skip
def test_a_full_disk_is_one_line_naming_the_file_and_saved_files_survive(
    run, capsys, monkeypatch, name: str, code: int
) -> None:
    before = snapshot(run / "checkpoints")
    original = ckpt._write_synced

    def write(path: Path, data: bytes) -> None:
        if path.name == name:
            raise OSError(code, os.strerror(code))  # what write() raises: no file name
        original(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", write)
    code_, _, err = _resume(run, capsys)
    where = f"{run}/checkpoints/.tmp-step_00000006/{name}"
    intact = "the last checkpoint step_00000004 is intact"
    assert_one_line_error(code_, err, where, os.strerror(code), intact)
    assert snapshot(run / "checkpoints") == before
    assert not (run / LOCK_FILE).exists()


def test_eval_json_is_replaced_atomically(run, capsys, monkeypatch) -> None:
    assert run_cli(["eval", run], capsys)[0] == 0
    saved = (run / "eval.json").read_bytes()

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "_write_synced", full)
    code, _, err = run_cli(["eval", run, "--seed", "3"], capsys)
    assert_one_line_error(code, err, f"{run / 'eval.json'}: No space left on device")
    assert (run / "eval.json").read_bytes() == saved
    assert not (run / ".tmp-eval.json").exists()


# ----------------------------------------------------------------------------- broken files


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def test_broken_weights_name_the_file_and_the_checkpoint_to_use(run, capsys, tmp_path) -> None:
    bad = run / "checkpoints" / "step_00000004" / ckpt.EMA_FILE
    _truncate(bad)
    out = tmp_path / "x.npy"
    for command in (["sample", run, "--out", out], ["eval", run]):
        code, _, err = run_cli(command, capsys)
        assert_one_line_error(code, err, f"checkpoint file {bad} is corrupt",
                              "pass --checkpoint step_00000002")  # fmt: skip
    assert not out.exists()
    assert run_cli(["sample", run, "--out", out, "--checkpoint", "step_00000002"],
                   capsys)[0] == 0  # fmt: skip
    assert run_cli(["eval", run, "--checkpoint", "2"], capsys)[0] == 0
    assert json.loads((run / "eval.json").read_text())["checkpoint"].endswith("step_00000002")
    code, _, err = run_cli(["sample", run, "--out", out, "--checkpoint", "../x"], capsys)
    assert_one_line_error(code, err, "checkpoint '../x': expected best, latest")


def test_broken_checkpoint_on_resume_says_which_directory_to_delete(run, capsys) -> None:
    _truncate(run / "checkpoints" / "step_00000004" / ckpt.MODEL_FILE)
    before = snapshot(run)
    code, _, err = _resume(run, capsys)
    assert_one_line_error(code, err, "step_00000004/model.safetensors is corrupt",
                          f"to resume from step_00000002, the newest intact checkpoint, delete "
                          f"{run / 'checkpoints' / 'step_00000004'}")  # fmt: skip
    assert snapshot(run) == before
    code, _, err = _resume(run, capsys, "--set", "train.seed=1")  # a refused resume, too
    assert_one_line_error(code, err, "train.seed is 1 but the checkpoint")
    assert snapshot(run) == before
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    assert _resume(run, capsys)[0] == 0
    _truncate(run / "checkpoints" / "step_00000006" / ckpt.STATE_FILE)
    _truncate(run / "checkpoints" / "step_00000004" / ckpt.STATE_FILE)
    code, _, err = _resume(run, capsys, "--set", "train.steps=8")
    assert_one_line_error(code, err, "trainer_state.pt is corrupt",
                          "no other checkpoint of the run is intact")  # fmt: skip


# ----------------------------------------------------------------------------- links


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "eval.json", "checkpoints"])
def test_links_leading_outside_the_run_are_refused(run, capsys, tmp_path, name) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(run, outside)
    target = outside / name
    if not target.exists():
        target.write_text("{}")
    victim = snapshot(outside)
    link = run / name
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target)
    for args in (["eval", run], ["sample", run, "--out", tmp_path / "x.npy"]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, f"{link}: resolves to {target}, outside the run")
    code, _, err = _resume(run, capsys)
    assert_one_line_error(code, err, f"{link}: resolves to", "refused")
    assert snapshot(outside) == victim


def test_a_fifo_in_a_run_is_refused_not_read(run, capsys, tmp_path) -> None:
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    started = time.monotonic()
    code, _, err = _resume(run, capsys)
    assert_one_line_error(code, err, "metrics.jsonl: not a regular file")
    assert time.monotonic() - started < 30
