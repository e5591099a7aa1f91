"""What a model family is to the rest of genlab: one `Family` record.

A record says everything the application layer needs to know about a family, so that the
config schema, the model builder, the likelihood estimator, the benchmarks and the command
line read it instead of branching on family names:

- `options`: the pydantic model of the family's config section, and `section`, the TOML
  table that holds it (default: the family's name; several families may share one);
- `build(cfg, shape)`: the model for examples of `shape` ((D,) or (C, H, W));
- `likelihood(settings)`: which bounds `genlab eval --likelihood` reports, each with the
  keyword arguments of the family's `log_prob`; None if the family has no likelihood;
- `sampling(model, options)`: the keyword arguments of the family's `sample` for the
  sampling options a user gave (`sampler`, `nfe`, ...); by default the family samples
  exactly and refuses every option;
- data it accepts, whether image data must be dequantised (a density of continuous values
  needs `data.dequantize`), whether it takes `[net]`, whether it is class-conditional,
  whether it is text-conditional (trains on captions, `data.captions` and `[text]`);
- `describe(cfg)`: a few words for tables and plots, and `check(cfg)`: cross-section rules
  of its own, raising `ConfigError("key: message")`;
- `metrics(run, data)`: measurements of the family's own that `genlab eval` reports next to
  the sample metrics (a tokenizer's reconstruction error and codebook usage, a prior's
  bits per token, ...);
- `prepare(cfg)`: for a family built on another run (a prior over a tokenizer's codes, a
  diffusion model in an autoencoder's latent space), the config completed before training,
  e.g. with the other run's config embedded, so that the run directory alone rebuilds the
  model (the other run's weights are then part of the model's own state dict).

The module imports no torch: records are built at import time, models only when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from genlab.errors import ConfigError

if TYPE_CHECKING:
    from genlab.config import LikelihoodSection, RunConfig
    from genlab.protocol import GenerativeModel

__all__ = ["IMAGE", "VECTOR", "Family", "LikelihoodBound", "exact_likelihood", "exact_sampling",
           "net_for", "ode_likelihood"]

VECTOR, IMAGE = "vector", "image"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class LikelihoodBound:
    """One estimate of the test log-likelihood: its `name` in tables ("exact", "PF-ODE",
    "IWAE k=1000", ...), the keyword arguments of the family's `log_prob`, and how many fixed
    draws of the estimator's randomness to average (None: `[likelihood] draws`)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    draws: int | None = None


def net_for(cfg: RunConfig, shape: Shape) -> Any:
    """The `[net]` network of a family that takes one, for examples of `shape`; class
    labels reach it when the model is class-conditional, the text encoder's token states
    and/or pooled vector when it is text-conditioned."""
    from genlab.nets.table import build_net

    if cfg.net is None:
        raise ConfigError(f"model.family = {cfg.model.family!r} takes no [net]")
    context_dim, pooled_dim = (None, None) if cfg.text is None else cfg.text.net_dims()
    try:
        return build_net(cfg.net.name, cfg.net.options, shape, cfg.model.num_classes or None,
                         context_dim=context_dim, pooled_dim=pooled_dim)  # fmt: skip
    except ValueError as err:
        raise ConfigError(f"net.name: {err}") from None


def exact_likelihood(settings: LikelihoodSection) -> list[LikelihoodBound]:
    """A family whose `log_prob` is exact and takes no options (normalizing flows)."""
    return [LikelihoodBound("exact")]


def ode_likelihood(name: str) -> Callable[[LikelihoodSection], list[LikelihoodBound]]:
    """A family whose `log_prob` integrates an ODE with the instantaneous change of variables
    (`name`: "PF-ODE", "CNF ODE"): the settings' solver and trace estimator."""

    def bounds(settings: LikelihoodSection) -> list[LikelihoodBound]:
        return [LikelihoodBound(name, {"ode": settings.ode()})]

    return bounds


# what the application layer passes to `sampling` besides the user's options: the run's
# cache of fitted grids with the schedule "fitted" (`genlab.runs.grids`)
CONTEXT_OPTIONS = ("grid_store",)


def exact_sampling(model: GenerativeModel, options: Mapping[str, Any]) -> dict[str, Any]:
    """A family with one exact sampler: every sampling option is refused."""
    given = sorted(k for k, v in options.items() if v is not None and k not in CONTEXT_OPTIONS)
    if given:
        raise ConfigError(f"{', '.join(given)}: not a sampling option of this run: it samples "
                          "exactly with its own sampler (sampler, nfe, schedule and guidance "
                          "are options of diffusion runs)")  # fmt: skip
    return {}


@dataclass(frozen=True)
class Family:
    """A model family as the application layer sees it (see the module docstring)."""

    name: str
    description: str
    options: type[BaseModel]
    build: Callable[[RunConfig, Shape], GenerativeModel]
    describe: Callable[[RunConfig], str]
    section: str | None = None
    data: tuple[str, ...] = (VECTOR, IMAGE)
    dequantize_images: bool = False
    uses_net: bool = False
    conditional: bool = False
    text_conditional: bool = False
    likelihood: Callable[[LikelihoodSection], list[LikelihoodBound]] | None = exact_likelihood
    sampling: Callable[[GenerativeModel, Mapping[str, Any]], dict[str, Any]] = exact_sampling
    check: Callable[[RunConfig], None] | None = None
    prepare: Callable[[RunConfig], RunConfig] | None = None
    metrics: Callable[[Any, Any], dict[str, float]] | None = None

    @property
    def table(self) -> str:
        """The TOML table holding the family's options."""
        return self.section or self.name
