"""PNG plots of samples, sampling trajectories and training curves.

Figures are built as ``matplotlib.figure.Figure`` objects drawn by the Agg
canvas, never through ``pyplot``: nothing is shown, no global backend is
changed, and no figure outlives its function. Every function writes one PNG
(creating the parent folder) and returns its path. Points of dimension
``D > 2`` are drawn by their first two coordinates.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from genlab.errors import DataError

__all__ = ["plot_samples", "plot_trajectories", "plot_loss_curve", "plot_grid"]

PathLike = str | os.PathLike[str]
_DATA_STYLE = {"s": 2, "c": "0.75", "alpha": 0.5, "linewidths": 0, "label": "data"}
_SAMPLE_STYLE = {"s": 3, "c": "tab:blue", "alpha": 0.6, "linewidths": 0, "label": "samples"}


def _xy(points: Tensor, name: str) -> np.ndarray:
    """``(N, D)`` tensor -> ``(N, 2)`` float array of the first two coordinates."""
    arr = points.detach().to("cpu", torch.float64).numpy()
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, D) with D >= 2, got {tuple(arr.shape)}")
    return arr[:, :2]


def _limits(arr: np.ndarray, pad: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits from the 0.5%-99.5% range of ``arr`` (N, 2), so outliers do not flatten it."""
    finite = arr[np.isfinite(arr).all(axis=1)]
    if finite.shape[0] == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = np.quantile(finite, [0.005, 0.995], axis=0)  # (2,), (2,)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    return out


def _scatter_panel(ax: Axes, pts: np.ndarray, data: np.ndarray | None, title: str | None) -> None:
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], **_DATA_STYLE)
    ax.scatter(pts[:, 0], pts[:, 1], **_SAMPLE_STYLE)
    xlim, ylim = _limits(data if data is not None else pts)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title)


def plot_samples(
    samples: Tensor, data: Tensor | None, path: PathLike, *, title: str | None = None
) -> Path:
    """Scatter ``samples`` (N, D) over reference ``data`` (M, D) and write a PNG."""
    pts = _xy(samples, "samples")
    ref = None if data is None else _xy(data, "data")
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    _scatter_panel(ax, pts, ref, title)
    ax.legend(loc="upper right", markerscale=4, fontsize="small")
    return _save(fig, path)


def plot_trajectories(
    traj: Sequence[Tensor] | Tensor,
    path: PathLike,
    *,
    data: Tensor | None = None,
    max_paths: int = 200,
) -> Path:
    """Draw sampling paths: ``traj`` is a list of ``(N, D)`` states or a ``(steps, N, D)`` tensor.

    At most ``max_paths`` paths (the first ones) are drawn as lines, with start
    points in grey and end points in blue, over the optional ``data``. With
    ``data`` the view frames the data and the end points; otherwise all states.
    """
    states = torch.stack(list(traj)) if not isinstance(traj, Tensor) else traj
    if states.ndim != 3 or states.shape[0] < 1 or states.shape[2] < 2:
        raise ValueError(f"traj must have shape (steps, N, D>=2), got {tuple(states.shape)}")
    arr = states[:, :max_paths, :2].detach().to("cpu", torch.float64).numpy()  # (S, P, 2)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ref = None if data is None else _xy(data, "data")
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], **_DATA_STYLE)
    ax.plot(arr[:, :, 0], arr[:, :, 1], color="tab:orange", alpha=0.35, linewidth=0.6)
    ax.scatter(arr[0, :, 0], arr[0, :, 1], s=5, c="0.3", linewidths=0, label="start")
    ax.scatter(arr[-1, :, 0], arr[-1, :, 1], s=5, c="tab:blue", linewidths=0, label="end")
    # frame the data and the end points; high-noise starts (e.g. sigma = 80) may leave it
    xlim, ylim = _limits(arr.reshape(-1, 2) if ref is None else np.concatenate([ref, arr[-1]]))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="upper right", markerscale=3, fontsize="small")
    return _save(fig, path)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {lineno} is not valid JSON") from None
            if isinstance(record, dict):
                records.append(record)
    return records


def plot_loss_curve(
    metrics: PathLike | Sequence[Mapping[str, object]],
    path: PathLike,
    *,
    keys: Sequence[str] = ("loss",),
) -> Path:
    """Plot ``keys`` (default ``"loss"``) against ``"step"`` from a metrics JSONL file or records.

    Records without a key are skipped (e.g. evaluation lines); a record without
    ``"step"`` uses its position. The y axis is logarithmic when every plotted
    value is positive (a negative log-likelihood may not be) and linear otherwise.
    """
    source = metrics if isinstance(metrics, (str, os.PathLike)) else "records"
    records = _read_jsonl(Path(metrics)) if isinstance(metrics, (str, os.PathLike)) else metrics
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    all_positive, plotted = True, 0
    for key in keys:
        steps, values = [], []
        for i, rec in enumerate(records):
            value = rec.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                steps.append(float(rec.get("step", i)))
                values.append(float(value))
        if values:
            ax.plot(steps, values, linewidth=1.0, label=key)
            all_positive = all_positive and min(values) > 0.0
            plotted += 1
    if plotted == 0:
        raise DataError(f"{source}: no finite values for {', '.join(keys)} to plot")
    ax.set_yscale("log" if all_positive else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel(", ".join(keys))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_grid(panels: Mapping[str, Tensor], path: PathLike, data: Tensor | None = None) -> Path:
    """Several scatter panels in one figure, e.g. one per sampler, titled by their keys.

    All panels share axis limits, taken from ``data`` when given.
    """
    if not panels:
        raise ValueError("plot_grid needs at least one panel")
    named = {name: _xy(pts, f"panel {name!r}") for name, pts in panels.items()}
    ref = None if data is None else _xy(data, "data")
    ncols = min(len(named), 4)
    nrows = math.ceil(len(named) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.2 * nrows))
    span = ref if ref is not None else np.concatenate(list(named.values()))
    xlim, ylim = _limits(span)
    for i, (name, pts) in enumerate(named.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _scatter_panel(ax, pts, ref, name)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.tick_params(labelsize="x-small")
    return _save(fig, path)
