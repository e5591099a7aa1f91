"""Fitted grids cached in a run directory: fitted once per settings, reused afterwards.

`genlab sample RUN --schedule fitted` (or `[sample] schedule = "fitted"`) fits a grid for
the (sampler, NFE, guidance, ...) it samples with (`genlab.fit_grid` on fresh pilot noise)
and keeps it as JSON next to the checkpoints, with the settings it was fitted for:

    RUN/grids/<sampler>-nfe<N>-<hash of the settings>.json
    {"genlab_version": ..., "settings": {...}, "grid": [...], "fit": {"seconds": ...,
     "calls": ..., "loss": ..., "karras_loss": ...}}

The settings include the checkpoint, so retrained weights get a grid of their own. Files
are written atomically (a temporary file, then a rename); an unreadable or mismatching file
is refitted, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.diffusion.grid_search import GridFit
from genlab.diffusion.schedules import check_grid
from genlab.runs.record import genlab_version
from genlab.runs.run import Run

__all__ = ["GRIDS_DIR", "RunGridCache"]

GRIDS_DIR = "grids"


def _key(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class RunGridCache:
    """The fitted grids of one run (`genlab.diffusion.fitted.GridStore`).

    ``cond`` is the condition of the batch being sampled, labels or a text context (the
    pilot batch cycles through its rows), ``uncond`` the unconditional branch of guidance
    (the empty or a negative prompt's context; None: the null label); ``log`` receives one
    line when a grid is fitted (its cost) or reused."""

    def __init__(
        self,
        run: Run,
        *,
        cond: Any = None,
        uncond: Any = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.run, self.cond, self.uncond, self.log = run, cond, uncond, log
        self.root = run.run_dir / GRIDS_DIR

    def path(self, settings: dict[str, Any]) -> Path:
        return self.root / f"{settings['sampler']}-nfe{settings['nfe']}-{_key(settings)}.json"

    def _settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        ckpt = self.run.checkpoint
        rel = ckpt.relative_to(self.run.run_dir) if ckpt.is_relative_to(self.run.run_dir) else ckpt
        return {**settings, "checkpoint": str(rel)}

    def _read(self, path: Path, settings: dict[str, Any]) -> Tensor | None:
        try:
            record = json.loads(path.read_text())
            if record["settings"] != settings:
                return None
            grid = torch.tensor([float(v) for v in record["grid"]], dtype=torch.float64)
            check_grid(grid)
        except (OSError, ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError
            return None
        return grid

    def grid(self, settings: dict[str, Any], fit: Callable[[], GridFit]) -> Tensor:
        """The cached grid of ``settings`` (plus this run's checkpoint), else ``fit()``'s,
        written atomically to the run directory."""
        full = self._settings(settings)
        path = self.path(full)
        if path.is_file():
            grid = self._read(path, full)
            if grid is not None:
                self._say(f"using the fitted grid {path}")
                return grid
        result = fit()
        record = {"genlab_version": genlab_version(), "settings": full,
                  "grid": result.grid.tolist(),
                  "fit": {"seconds": round(result.seconds, 3), "calls": result.calls,
                          "loss": _finite(result.loss),
                          "karras_loss": _finite(result.karras_loss)}}  # fmt: skip
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)
        pilot = settings.get("pilot_size")
        self._say(f"fitted a grid for {settings['sampler']} at NFE {settings['nfe']} in "
                  f"{result.seconds:.1f} s ({result.calls} denoiser calls on {pilot} pilot "
                  f"trajectories; pilot {settings.get('objective')} {result.loss:.3g} vs "
                  f"{result.karras_loss:.3g} on karras); saved to {path}")  # fmt: skip
        return result.grid

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
