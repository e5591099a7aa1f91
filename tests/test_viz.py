"""Plots: each function writes a valid PNG and leaves no open figure behind."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from genlab.errors import DataError
from genlab.viz import plot_grid, plot_loss_curve, plot_samples, plot_trajectories


@pytest.fixture(autouse=True)
def _no_figure_leak():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


def _points(n: int, d: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _assert_png(path: Path) -> None:
    assert path.is_file()
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 50 and img.height > 50


def test_plot_samples_2d_and_higher_dim(tmp_path: Path) -> None:
    out = plot_samples(_points(300), _points(500, seed=1), tmp_path / "s.png", title="samples")
    assert out == tmp_path / "s.png"
    _assert_png(out)
    _assert_png(plot_samples(_points(300, d=5), None, tmp_path / "sub" / "s5.png"))


def test_plot_samples_rejects_1d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="D >= 2"):
        plot_samples(_points(10, d=1), None, tmp_path / "x.png")


def test_plot_samples_survives_outliers_and_nan(tmp_path: Path) -> None:
    pts = _points(100)
    pts[0] = torch.tensor([1e8, -1e8])
    pts[1] = float("nan")
    _assert_png(plot_samples(pts, None, tmp_path / "o.png"))


def test_plot_trajectories_list_and_tensor(tmp_path: Path) -> None:
    steps = [_points(50, seed=s) * (1 - s / 10) for s in range(10)]
    _assert_png(plot_trajectories(steps, tmp_path / "t1.png", data=_points(200, seed=99)))
    _assert_png(plot_trajectories(torch.stack(steps), tmp_path / "t2.png", max_paths=5))
    with pytest.raises(ValueError, match="steps, N, D"):
        plot_trajectories(torch.zeros(3, 4), tmp_path / "bad.png")


def test_plot_loss_curve_from_records_and_jsonl(tmp_path: Path) -> None:
    records = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(100)]
    records.insert(50, {"step": 50, "eval_sw2": 0.3})  # lines without "loss" are skipped
    _assert_png(plot_loss_curve(records, tmp_path / "l1.png"))
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    _assert_png(plot_loss_curve(jsonl, tmp_path / "l2.png"))
    negative = [{"step": i, "loss": -float(i)} for i in range(10)]  # NLL can be negative
    _assert_png(plot_loss_curve(negative, tmp_path / "l3.png"))


def test_plot_loss_curve_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        plot_loss_curve(tmp_path / "missing.jsonl", tmp_path / "x.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "loss": 1.0}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        plot_loss_curve(bad, tmp_path / "x.png")
    with pytest.raises(DataError, match="no finite values for loss"):
        plot_loss_curve([{"step": 0}], tmp_path / "x.png")


@pytest.mark.parametrize("n_panels", [1, 3, 6])
def test_plot_grid(tmp_path: Path, n_panels: int) -> None:
    panels = {f"sampler {i}": _points(100, seed=i) for i in range(n_panels)}
    _assert_png(plot_grid(panels, tmp_path / "g.png", data=_points(300, seed=42)))


def test_plot_grid_needs_a_panel(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one panel"):
        plot_grid({}, tmp_path / "g.png")
