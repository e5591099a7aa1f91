"""The diffusion family: every diffusion-type model (DDPM, DDIM, score SDEs, EDM, flow
matching, rectified flow) as a preset with any piece replaced by name.

Its options sit in the `[model]` table next to `family` (the format of every diffusion
config): `preset` and optional overrides `path`, `parameterization`, `noise`, `weighting`,
each a registry name with an optional `<piece>_options` table of constructor arguments;
options without a name adjust the preset's own piece.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from genlab import registry
from genlab.errors import ConfigError
from genlab.families.base import Family, Shape, net_for, ode_likelihood

if TYPE_CHECKING:
    from torch import Tensor

    from genlab.config import RunConfig
    from genlab.diffusion.fitted import GridStore
    from genlab.diffusion.grid_search import GridFit
    from genlab.diffusion.presets import Component
    from genlab.protocol import GenerativeModel

PIECES = ("path", "parameterization", "noise", "weighting")
PIECE_NAMES: dict[str, tuple[str, ...]] = {
    "path": registry.PATHS,
    "parameterization": registry.PARAMETERIZATIONS,
    "noise": registry.NOISE_DISTRIBUTIONS,
    "weighting": registry.WEIGHTINGS,
}
SAMPLING_OPTIONS = ("sampler", "nfe", "schedule", "guidance", "callback", "grid_store")


def _piece_table(piece: str) -> Mapping[str, Any]:
    """The constructors of one kind of piece, by name (imports the diffusion code)."""
    from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS
    from genlab.diffusion.parameterization import PARAMETERIZATIONS
    from genlab.diffusion.paths import PATHS

    tables = {"path": PATHS, "parameterization": PARAMETERIZATIONS,
              "noise": NOISE_DISTRIBUTIONS, "weighting": WEIGHTINGS}  # fmt: skip
    return tables[piece]


def _one_of(value: str | None, names: tuple[str, ...]) -> str | None:
    if value is not None and value not in names:
        raise ValueError(f"{value!r} is not one of {', '.join(sorted(names))}")
    return value


def _braces(text: str) -> str:
    """pydantic formats messages with str.format-like templates: keep braces literal."""
    return text.replace("{", "(").replace("}", ")")


class DiffusionOptions(BaseModel):
    """A preset (`genlab.diffusion.presets.PRESETS`) with any piece replaced by name."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "flow-matching"
    path: str | None = None
    path_options: dict[str, Any] = Field(default_factory=dict)
    parameterization: str | None = None
    parameterization_options: dict[str, Any] = Field(default_factory=dict)
    noise: str | None = None
    noise_options: dict[str, Any] = Field(default_factory=dict)
    weighting: str | None = None
    weighting_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        return _one_of(v, registry.PRESETS) or v

    @field_validator(*PIECES)
    @classmethod
    def _piece(cls, v: str | None, info: Any) -> str | None:
        return _one_of(v, PIECE_NAMES[info.field_name])

    def component(self, piece: str) -> Component | None:
        """The override of one piece, or None to keep the preset's.

        Options without a name adjust the preset's own piece (merged over its options)."""
        from genlab.diffusion.presets import Component, get_preset

        name, options = getattr(self, piece), getattr(self, f"{piece}_options")
        if name is None and not options:
            return None
        if name is None:
            base: Component = getattr(get_preset(self.preset), piece)
            return Component(base.name, {**base.options, **options})
        return Component(name, dict(options))

    def components(self) -> dict[str, Component | None]:
        return {piece: self.component(piece) for piece in PIECES}

    @model_validator(mode="after")
    def _buildable(self) -> DiffusionOptions:
        from genlab.diffusion.presets import build_objective

        for piece in PIECES:  # each override on its own, so the error names its key
            comp = self.component(piece)
            if comp is None:
                continue
            try:
                _piece_table(piece)[comp.name](**comp.options)
            except (ConfigError, ValueError, TypeError) as err:
                raise PydanticCustomError("key_error", f"{comp.name!r}: {_braces(str(err))}",
                                          {"key": f"{piece}_options"}) from None  # fmt: skip
        try:
            build_objective(self.preset, **self.components())
        except (ConfigError, ValueError, TypeError) as err:
            raise PydanticCustomError("key_error", _braces(str(err)), {"key": "preset"}) from None
        return self


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    """A diffusion model of the preset; with `model.label_dropout` > 0 the null label of
    classifier-free guidance is `num_classes`. A text-conditioned run drops captions with
    `text.dropout` to caption group 0, the empty caption (`genlab.text.table`)."""
    from genlab.diffusion.model import Diffusion

    opts: DiffusionOptions = cfg.options  # type: ignore[assignment]
    m = cfg.model
    dropout, null = m.label_dropout, m.num_classes
    if cfg.text is not None:
        from genlab.text.table import EMPTY_GROUP

        dropout, null = cfg.text.dropout, EMPTY_GROUP
    return Diffusion.from_preset(opts.preset, net_for(cfg, shape), shape,
                                 label_dropout=dropout, null_label=null if dropout > 0 else None,
                                 **opts.components())  # fmt: skip


def describe(cfg: RunConfig) -> str:
    opts: DiffusionOptions = cfg.options  # type: ignore[assignment]
    return f"{opts.preset}, {cfg.net_label()}"


def sampling(model: GenerativeModel, options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `Diffusion.sample`: the given sampler, NFE budget and grid (the
    model's defaults otherwise), names and budget checked; `guidance` needs a model trained
    with label dropout."""
    from genlab.diffusion.sample import SAMPLERS
    from genlab.discrete import unwrap

    unknown = sorted(k for k, v in options.items() if v is not None and k not in SAMPLING_OPTIONS)
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a sampling option of diffusion runs")
    inner: Any = unwrap(model)
    sampler = options.get("sampler") or inner.sampler
    nfe = options.get("nfe") or inner.nfe
    schedule = options.get("schedule") or inner.schedule
    for key, value, table in (("sampler", sampler, registry.SAMPLERS),
                              ("schedule", schedule, registry.SCHEDULES)):  # fmt: skip
        if value not in table:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(table))}")
    cost = SAMPLERS[sampler]
    if nfe < 1 or (not cost.adaptive and cost.steps_for(nfe) < 1):
        raise ConfigError(f"nfe: {nfe} is too small for {sampler!r} "
                          f"(one step costs {cost.calls(1)})")  # fmt: skip
    guidance = options.get("guidance")
    if guidance is not None and inner.null_label is None:
        raise ConfigError("--guidance: needs a model trained with label dropout or caption "
                          "dropout (model.label_dropout > 0 or text.dropout > 0)")  # fmt: skip
    grid: Any = schedule
    if schedule == "fitted":  # registry.SCHEDULES: a grid fitted to the model
        if cost.stochastic or cost.adaptive:
            raise ConfigError(f"schedule: 'fitted' needs a deterministic fixed-step sampler "
                              f"(got {sampler!r})")  # fmt: skip
        if options.get("grid_store") is not None:
            grid = _fitted_grid(inner, sampler, nfe, guidance, options["grid_store"])
    return {"sampler": sampler, "nfe": nfe, "schedule": grid, "guidance": guidance,
            "callback": options.get("callback")}  # fmt: skip


def _fitted_grid(
    model: Any, sampler: str, nfe: int, guidance: float | None, store: GridStore
) -> Tensor:
    """The run's grid fitted for (sampler, nfe, guidance), from ``store`` or fitted once."""
    from genlab.diffusion.fitted import FIT_DEFAULTS, fit_grid_result, fit_settings
    from genlab.diffusion.sample import pilot_cond

    settings = {**fit_settings(sampler, nfe, None, model.sigma_min, model.sigma_max,
                               **FIT_DEFAULTS), "guidance": guidance}  # fmt: skip
    cond = pilot_cond(store.cond, FIT_DEFAULTS["pilot_size"])
    uncond = None if guidance is None else getattr(store, "uncond", None)

    def fit() -> GridFit:
        return fit_grid_result(model.sampling_denoiser(guidance, uncond), sampler=sampler, nfe=nfe,
                               shape=model.data_shape, cond=cond, **FIT_DEFAULTS)  # fmt: skip

    return store.grid(settings, fit)


FAMILY = Family(
    name="diffusion",
    description="diffusion and flow matching: any path, parameterization, noise and weighting; "
    "every sampler; likelihood by the probability-flow ODE",
    options=DiffusionOptions,
    section="model",
    build=build,
    describe=describe,
    uses_net=True,
    conditional=True,
    text_conditional=True,
    likelihood=ode_likelihood("PF-ODE"),
    sampling=sampling,
)
