"""Drawing samples from a run: the family's own sampler with the options a user gave.

The family record (`genlab.families`) turns the options (`sampler`, `nfe`, `schedule`,
`guidance` of diffusion runs; `decode`, `temperature`, `top_k`, `top_p` of token priors;
None means the run's default) into the keyword arguments of its model's `sample`, refusing
options it does not have; the draws are deterministic from `seed`.
With the schedule "fitted" the family gets the run's grid cache (`genlab.runs.grids`).
`eval_condition` is what a run is evaluated on: the test split's class labels, or its
prompts (held-out phrasings, test captions) for a text-conditioned run; `generate` draws a
text-conditioned run's images for prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.diffusion.grid_search import FITTED
from genlab.runs.budget import check_sampling
from genlab.runs.data import Data, test_labels
from genlab.runs.grids import RunGridCache
from genlab.runs.run import Run
from genlab.runs.text import eval_prompts, prompt_conditions, run_store

__all__ = ["SampleSpec", "draw", "eval_condition", "generate", "sampling_record"]


@dataclass(frozen=True)
class SampleSpec:
    """Sampling options of a run; None means the run's (preset's) default."""

    sampler: str | None = None
    nfe: int | None = None
    schedule: str | None = None
    guidance: float | None = None
    decode: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None

    def options(self, callback: Callable[[dict[str, Any]], None] | None = None) -> dict:
        return {"sampler": self.sampler, "nfe": self.nfe, "schedule": self.schedule,
                "guidance": self.guidance, "decode": self.decode,
                "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                "callback": callback}  # fmt: skip


def _kwargs(run: Run, options: Mapping[str, Any]) -> dict[str, Any]:
    return run.family.sampling(run.model, options)


def sampling_record(run: Run, spec: SampleSpec) -> dict[str, Any]:
    """What samples: the resolved sampler, nfe and schedule of a diffusion run; the decoding
    of a token prior (e.g. "medusa (greedy)"); "exact" for families with their own exact
    sampler (ancestral, or a flow's inverse or ODE)."""
    kwargs = _kwargs(run, spec.options())
    sampler = kwargs.get("sampler", str(kwargs.get("decoding", "exact")))
    return {"sampler": sampler, "nfe": kwargs.get("nfe"), "schedule": kwargs.get("schedule")}


@torch.no_grad()
def draw(
    run: Run,
    n: int,
    spec: SampleSpec = SampleSpec(),
    *,
    seed: int = 0,
    cond: Any = None,
    uncond: Any = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Tensor:
    """n samples (n, *data_shape) of the run, deterministic from `seed`.

    `cond` are class labels (n,) of a class-conditional model or the prompts' context of a
    text-conditioned one; `spec.guidance` is the classifier-free guidance scale w (1 =
    conditional, 0 = unconditional), whose unconditional branch is the null label or
    `uncond` (the empty or a negative prompt's context). `callback` receives a diffusion
    sampler's per-step dict (`x`, `sigma`, `denoised`, ...). With the schedule "fitted",
    `log` gets one line: the fitting cost, or the cached grid reused."""
    options = spec.options(callback)
    if spec.schedule == FITTED:
        options["grid_store"] = RunGridCache(run, cond=cond, uncond=uncond, log=log)
    kwargs = _kwargs(run, options)
    if uncond is not None:
        kwargs["uncond"] = uncond
    check_sampling(run.config, run.shape, n)
    generator = torch.Generator().manual_seed(seed)
    return run.model.sample(n, cond, generator=generator, **kwargs)


@torch.no_grad()
def generate(
    run: Run,
    prompts: Sequence[str],
    n: int = 1,
    spec: SampleSpec = SampleSpec(),
    *,
    negative: str | None = None,
    seed: int = 0,
) -> Tensor:
    """n images per prompt of a text-conditioned run, (len(prompts) * n, *shape), prompt by
    prompt, deterministic from `seed`. With `spec.guidance` the unconditional branch is the
    empty prompt, or `negative`. Prompts go through the run's embedding cache."""
    texts = [p for p in prompts for _ in range(n)]
    store = run_store(run.config, run.run_dir)
    cond, uncond = prompt_conditions(store, texts, guidance=spec.guidance, negative=negative)
    return draw(run, len(texts), spec, seed=seed, cond=cond, uncond=uncond)


def eval_condition(
    run: Run, data: Data, n: int, guidance: float | None = None
) -> tuple[Any, Any, Tensor | None]:
    """(cond, uncond, labels) to evaluate a run on n samples: the test split's class labels
    (class-conditional runs), or its prompts with the empty prompt as the unconditional
    branch (text-conditioned runs; labels: the digits the prompts ask for, if known)."""
    if run.config.text is not None:
        prompts, labels = eval_prompts(data, n)
        store = run_store(run.config, run.run_dir)
        cond, uncond = prompt_conditions(store, prompts, guidance=guidance)
        return cond, uncond, labels
    labels = test_labels(data, n) if run.config.model.num_classes > 0 else None
    return labels, None, labels
