"""The command line: one-line errors with exit status 2, and a train -> sample -> eval round trip.

Most cases call `genlab.cli.main` in-process (fast); a few run `python -m genlab.cli` in a
subprocess to check what a user really sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

TINY = """
[data]
name = "moons"
n_train = 400
n_test = 100
[model]
preset = "flow-matching"
[net]
hidden = 32
depth = 2
time_dim = 16
[train]
steps = 20
batch_size = 64
warmup_steps = 5
ema_decay = 0.9
checkpoint_every = 10
log_every = 5
[sample]
sampler = "euler"
nfe = 4
n = 50
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


BAD_SETS = [
    ("train.stepz=1", "train.stepz", "allowed: batch_size"),
    ("model.preset=flow-matchin", "model.preset", "ddim, ddpm, edm"),
    ("train.lr=-1", "train.lr", "must be > 0 (got -1)"),
    ("train.steps=0", "train.steps", ">= 1"),
    ("train.ema_decay=1.5", "train.ema_decay", "< 1"),
    ("sample.nfe=0", "sample.nfe", ">= 1"),
    ("sample.sampler=eulr", "sample.sampler", "euler"),
    ("data.name=moon", "data.name", "moons"),
    ("data.n_test=1", "data.n_test", ">= 2"),
    ("net.name=resnet", "net.name", "mlp"),
    ("model.noise=gauss", "model.noise", "lognormal"),
    ("train", "--set", "key.sub=value"),
]


@pytest.mark.parametrize(("override", "key", "hint"), BAD_SETS, ids=[b[1] for b in BAD_SETS])
def test_bad_config_is_one_line_exit_2(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, key: str,
    hint: str,
) -> None:  # fmt: skip
    code, _, err = run_cli(["train", tiny, "--set", override, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, key, hint)
    assert not (tmp_path / "r").exists()


def test_bad_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", tmp_path / "missing.toml"], capsys)
    assert_one_line_error(code, err, "missing.toml", "not found")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nsteps = 3\n")
    code, _, err = run_cli(["train", broken], capsys)
    assert_one_line_error(code, err, "broken.toml", "invalid TOML")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nstepz = 3\n")
    code, _, err = run_cli(["train", wrong], capsys)
    assert_one_line_error(code, err, "train.stepz: unknown key")


def _points_config(tmp_path: Path, data_file: Path) -> Path:
    path = tmp_path / "points.toml"
    text = TINY.replace('name = "moons"', f'name = "points"\npath = "{data_file.as_posix()}"')
    path.write_text(text.replace("n_test = 100", "n_test = 20"))
    return path


def _corrupt_npy(path: Path) -> None:
    path.write_bytes(b"\x93NUMPY garbage")


def _nan_csv(path: Path) -> None:
    path.write_text("x,y\n" + "\n".join(f"{i},{i}" for i in range(50)) + "\nnan,1\n")


@pytest.mark.parametrize(
    ("name", "make"),
    [("absent.npy", None), ("corrupt.npy", _corrupt_npy), ("nan.csv", _nan_csv)],
)
def test_bad_data_file_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: object
) -> None:
    data_file = tmp_path / name
    if callable(make):
        make(data_file)
    code, _, err = run_cli(["train", _points_config(tmp_path, data_file), "--out",
                            tmp_path / "r"], capsys)  # fmt: skip
    assert_one_line_error(code, err, name)


def test_points_file_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_file = tmp_path / "cloud.npy"
    np.save(data_file, np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32))
    code, _, err = run_cli(["train", _points_config(tmp_path, data_file), "--set",
                            "train.steps=2", "--out", tmp_path / "r"], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["eval", tmp_path / "r", "-n", 30], capsys)
    assert code == 0, err


def test_train_sample_eval_round_trip(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = run_cli(["train", tiny, "--out", run], capsys)
    assert code == 0, err
    assert (run / "config.json").is_file() and (run / "metrics.jsonl").is_file()
    code, _, err = run_cli(["sample", run, "--sampler", "heun", "--nfe", 5, "-n", 64,
                            "--out", tmp_path / "s.npy", "--seed", 3], capsys)  # fmt: skip
    assert code == 0, err
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (64, 2) and np.isfinite(x).all()
    code, _, err = run_cli(["sample", run, "--out", tmp_path / "s.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run_cli(["eval", run, "--sampler", "dpmpp_2m", "--nfe", 6], capsys)
    assert code == 0, err
    record = json.loads((run / "eval.json").read_text())
    for key in ("sliced_wasserstein", "mmd_rbf", "energy_distance", "sw2_floor", "sw2_ratio"):
        assert key in record["metrics"]
    assert record["sampler"] == "dpmpp_2m" and record["nfe"] == 6 and record["n"] == 100
    assert "sw2_floor" in out


def test_gmm_ring_eval_has_log_density_gap(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "ring"
    args = ["train", tiny, "--set", "data.name=gmm-ring", "--set", "train.steps=3", "--out", run]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(["eval", run], capsys)
    assert code == 0, err
    assert "log_density_gap" in json.loads((run / "eval.json").read_text())["metrics"]


def test_sample_and_eval_errors(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["sample", tmp_path / "nope", "--out", tmp_path / "x.npy"], capsys)
    assert_one_line_error(code, err, "nope", "not found")
    run = tmp_path / "run"
    assert run_cli(["train", tiny, "--set", "train.steps=2", "--out", run], capsys)[0] == 0
    code, _, err = run_cli(["sample", run, "--out", tmp_path / "x.txt"], capsys)
    assert_one_line_error(code, err, "x.txt", ".npy")
    args = ["sample", run, "--sampler", "eulr", "--out", tmp_path / "x.npy"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "sampler", "'eulr'", "euler")
    code, _, err = run_cli(["train", tiny, "--out", run], capsys)
    assert_one_line_error(code, err, "already holds checkpoints")
    ema = run / "checkpoints" / "step_00000002" / "ema.safetensors"
    ema.write_bytes(b"garbage")
    code, _, err = run_cli(["eval", run], capsys)
    assert_one_line_error(code, err, "ema.safetensors")
    (run / "config.json").write_text("{not json")
    code, _, err = run_cli(["eval", run], capsys)
    assert_one_line_error(code, err, "config.json")


def _latest_step(run: Path) -> int:
    return int((run / "checkpoints" / "latest").read_text().strip().split("_")[1])


def test_resume_continues_finished_and_killed_runs(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert run_cli(["train", tiny, "--out", run], capsys)[0] == 0
    assert _latest_step(run) == 20
    # finished run, more steps: continues from step 20
    assert run_cli(["train", tiny, "--resume", "--set", "train.steps=30", "--out", run],
                   capsys)[0] == 0  # fmt: skip
    assert _latest_step(run) == 30
    # a run killed after its step-20 checkpoint: drop the newer one and resume
    shutil.rmtree(run / "checkpoints" / "step_00000030")
    (run / "checkpoints" / "latest").write_text("step_00000020")
    assert run_cli(["train", tiny, "--resume", "--set", "train.steps=30", "--out", run],
                   capsys)[0] == 0  # fmt: skip
    assert _latest_step(run) == 30
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 30


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    src = str(Path(__file__).parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "genlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_real_process_bad_input(tiny: Path, tmp_path: Path) -> None:
    proc = _subprocess(["train", str(tiny), "--set", "train.stepz=1"], tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, "train.stepz: unknown key")
    assert "Traceback" not in proc.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("genlab ")


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["sample"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_diverged_training_exits_1(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", tiny, "--set", "train.lr=1e30", "--set", "train.grad_clip=0",
            "--set", "train.warmup_steps=0", "--out", tmp_path / "r"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("training diverged")
