"""Known diffusion-type models as presets of the objective's knobs (docs/architecture.md).

A preset names a path, a parameterization, a training noise distribution, a weighting and
default sampling settings. Every piece can be overridden by name; nothing here is a class
of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS, DenoisingLoss
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS
from genlab.errors import ConfigError


@dataclass(frozen=True)
class Component:
    """A name in one of the registries plus constructor arguments."""

    name: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    path: Component
    parameterization: Component
    noise: Component
    weighting: Component
    sampler: str = "heun"
    nfe: int = 35
    schedule: str = "karras"


_DDPM = Preset(
    Component("ddpm", {"schedule": "linear"}),
    Component("eps"),
    Component("uniform_k"),
    Component("uniform"),
    sampler="dpmpp_2m",
    nfe=20,
)
PRESETS: dict[str, Preset] = {
    # Ho et al. (2020): discrete linear betas, eps-prediction, L_simple.
    "ddpm": _DDPM,
    # Song, Meng & Ermon (2021): the same training; deterministic DDIM sampling.
    "ddim": Preset(
        _DDPM.path, _DDPM.parameterization, _DDPM.noise, _DDPM.weighting, sampler="ddim", nfe=20
    ),
    # Karras et al. (2022): preconditioning, log-normal sigma, EDM weighting, Heun.
    "edm": Preset(
        Component("edm"),
        Component("edm", {"sigma_data": 0.5}),
        Component("lognormal"),
        Component("edm", {"sigma_data": 0.5}),
        sampler="heun",
        nfe=35,
    ),
    # Song et al. (2021) VP SDE: linear beta, eps-prediction (= score with lambda = sigma^2).
    "vp-sde": Preset(
        Component("vp"), Component("eps"), Component("uniform_t"), Component("uniform")
    ),
    # Song et al. (2021) VE SDE / SMLD: noise-conditional score net, output scaled by 1/sigma
    # (Song & Ermon 2020), i.e. eps-prediction, which equals score matching with lambda = sigma^2.
    "ve-sde": Preset(
        Component("ve"), Component("eps"), Component("uniform_t"), Component("uniform")
    ),
    # Lipman et al. (2023): linear path, velocity target, uniform t.
    "flow-matching": Preset(
        Component("linear"), Component("velocity"), Component("uniform_t"), Component("uniform")
    ),
    # Liu et al. (2023) with SD3's logit-normal times (Esser et al. 2024).
    "rectified-flow": Preset(
        Component("linear"),
        Component("velocity"),
        Component("logit_normal"),
        Component("uniform"),
    ),
}


def _build(table: dict[str, type], kind: str, comp: Component) -> object:
    if comp.name not in table:
        raise ConfigError(f"unknown {kind} {comp.name!r}; allowed: {', '.join(sorted(table))}")
    try:
        return table[comp.name](**comp.options)
    except TypeError as exc:
        raise ConfigError(f"bad options for {kind} {comp.name!r}: {exc}") from None


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def build_objective(
    preset: str,
    *,
    path: Component | None = None,
    parameterization: Component | None = None,
    noise: Component | None = None,
    weighting: Component | None = None,
) -> DenoisingLoss:
    """The objective of a preset with any piece replaced."""
    p = get_preset(preset)
    return DenoisingLoss(
        path=_build(PATHS, "path", path or p.path),  # type: ignore[arg-type]
        parameterization=_build(
            PARAMETERIZATIONS, "parameterization", parameterization or p.parameterization
        ),  # type: ignore[arg-type]
        noise=_build(NOISE_DISTRIBUTIONS, "noise distribution", noise or p.noise),  # type: ignore[arg-type]
        weighting=_build(WEIGHTINGS, "weighting", weighting or p.weighting),  # type: ignore[arg-type]
    )
