"""Drawing samples from a run: the family's own sampler with the options a user gave.

The family record (`genlab.families`) turns the options (`sampler`, `nfe`, `schedule`,
`guidance`; None means the run's default) into the keyword arguments of its model's
`sample`, refusing options it does not have; the draws are deterministic from `seed`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.runs.budget import check_sampling
from genlab.runs.run import Run

__all__ = ["SampleSpec", "draw", "sampling_record"]


@dataclass(frozen=True)
class SampleSpec:
    """Sampling options of a run; None means the run's (preset's) default."""

    sampler: str | None = None
    nfe: int | None = None
    schedule: str | None = None
    guidance: float | None = None

    def options(self, callback: Callable[[dict[str, Any]], None] | None = None) -> dict:
        return {"sampler": self.sampler, "nfe": self.nfe, "schedule": self.schedule,
                "guidance": self.guidance, "callback": callback}  # fmt: skip


def _kwargs(run: Run, options: Mapping[str, Any]) -> dict[str, Any]:
    return run.family.sampling(run.model, options)


def sampling_record(run: Run, spec: SampleSpec) -> dict[str, Any]:
    """What samples: the resolved sampler, nfe and schedule of a diffusion run; "exact" for
    families with their own exact sampler (ancestral, or a flow's inverse or ODE)."""
    kwargs = _kwargs(run, spec.options())
    return {"sampler": kwargs.get("sampler", "exact"), "nfe": kwargs.get("nfe"),
            "schedule": kwargs.get("schedule")}  # fmt: skip


@torch.no_grad()
def draw(
    run: Run,
    n: int,
    spec: SampleSpec = SampleSpec(),
    *,
    seed: int = 0,
    cond: Tensor | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> Tensor:
    """n samples (n, *data_shape) of the run, deterministic from `seed`.

    `cond` are class labels (n,) of a class-conditional model; `spec.guidance` is the
    classifier-free guidance scale w (1 = conditional, 0 = unconditional). `callback`
    receives a diffusion sampler's per-step dict (`x`, `sigma`, `denoised`, ...)."""
    kwargs = _kwargs(run, spec.options(callback))
    check_sampling(run.config, run.shape, n)
    generator = torch.Generator().manual_seed(seed)
    return run.model.sample(n, cond, generator=generator, **kwargs)
