"""`--schedule fitted` for a trained run: fitted once per settings, cached in the run directory
(JSON, written atomically), reused without a second fit, refitted when the settings change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from genlab.config import RunConfig
from genlab.diffusion.fitted import FIT_DEFAULTS
from genlab.runs import SampleSpec, draw, load_run, train_run
from genlab.runs.grids import GRIDS_DIR

CONFIG = {
    "data": {"name": "moons", "n_train": 200, "n_test": 50},
    "model": {"preset": "flow-matching"},
    "net": {"hidden": 16, "depth": 2, "time_dim": 8},
    "train": {"steps": 4, "batch_size": 32, "warmup_steps": 1, "checkpoint_every": 4,
              "log_every": 2, "progress": False},
    "sample": {"sampler": "euler", "nfe": 3, "n": 20, "schedule": "fitted"},
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fitted") / "run"
    train_run(RunConfig.from_dict(CONFIG), path)
    return path


class NetCalls:
    """Counts forward calls of the run's network."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.count = 0
        net.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


@pytest.fixture(autouse=True)
def small_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A smaller pilot and search than a user's default keep these tests fast."""
    monkeypatch.setitem(FIT_DEFAULTS, "pilot_size", 64)
    monkeypatch.setitem(FIT_DEFAULTS, "max_evals", 20)


def _grid_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / GRIDS_DIR).glob("*.json"))


def test_fitted_grid_is_cached_and_reused(run_dir: Path) -> None:
    run = load_run(run_dir)
    calls, lines = NetCalls(run.model.net), []
    spec = SampleSpec("euler", 3, "fitted")
    first = draw(run, 10, spec, seed=1, log=lines.append)
    fit_calls = calls.count
    assert fit_calls > 3 and "fitted a grid for euler at NFE 3" in lines[-1]
    (path,) = _grid_files(run_dir)
    record = json.loads(path.read_text())
    assert record["settings"]["sampler"] == "euler" and record["settings"]["nfe"] == 3
    assert record["settings"]["checkpoint"].startswith("checkpoints")
    grid = record["grid"]
    assert grid[-1] == 0.0 and all(b < a for a, b in zip(grid[:-1], grid[1:], strict=True))
    assert not list((run_dir / GRIDS_DIR).glob("*.tmp"))  # the atomic write left nothing

    calls.count = 0
    again = draw(run, 10, spec, seed=1, log=lines.append)
    assert calls.count == 3  # the sampler's 3 calls, no second fit
    assert "using the fitted grid" in lines[-1]
    torch.testing.assert_close(first, again)

    calls.count = 0
    draw(run, 10, SampleSpec("euler", 2, "fitted"), seed=1, log=lines.append)
    assert calls.count > 2 and len(_grid_files(run_dir)) == 2  # new settings: refitted


def test_a_mismatching_or_corrupt_cache_is_refitted(run_dir: Path) -> None:
    run = load_run(run_dir)
    spec = SampleSpec("heun", 3, "fitted")
    draw(run, 4, spec, seed=0)
    path = next(p for p in _grid_files(run_dir) if p.name.startswith("heun-"))
    record = json.loads(path.read_text())
    record["settings"]["nfe"] = 99  # settings it was not fitted for
    path.write_text(json.dumps(record))
    calls = NetCalls(run.model.net)
    draw(run, 4, spec, seed=0)
    assert calls.count > 3 and json.loads(path.read_text())["settings"]["nfe"] == 3
    path.write_text("{not json")
    calls.count = 0
    draw(run, 4, spec, seed=0)
    assert calls.count > 3 and json.loads(path.read_text())["grid"][-1] == 0.0


def test_cli_schedule_fitted(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                             ) -> None:  # fmt: skip
    out = tmp_path / "x.npy"
    code, stdout, err = run_cli(["sample", run_dir, "--out", out, "--nfe", "4"], capsys)
    assert code == 0, err
    assert "fitted a grid for euler at NFE 4" in stdout  # [sample] schedule = "fitted"
    code, stdout, _ = run_cli(["sample", run_dir, "--out", out, "--nfe", "4",
                               "--schedule", "fitted"], capsys)  # fmt: skip
    assert code == 0 and "using the fitted grid" in stdout and "fitted a grid" not in stdout
    code, _, err = run_cli(["sample", run_dir, "--out", out, "--schedule", "fited"], capsys)
    assert_one_line_error(code, err, "schedule", "fitted", "karras")
    code, _, err = run_cli(["sample", run_dir, "--out", out, "--sampler", "ddpm",
                            "--schedule", "fitted"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "schedule", "deterministic", "ddpm")


def test_families_with_an_exact_sampler_refuse_the_schedule_not_the_cache() -> None:
    from genlab.errors import ConfigError
    from genlab.families.base import exact_sampling

    with pytest.raises(ConfigError) as info:
        exact_sampling(torch.nn.Identity(), {"schedule": "fitted", "grid_store": object()})  # type: ignore[arg-type]
    assert str(info.value).startswith("schedule: not a sampling option of this run")
