"""Run configuration: typed pydantic models with a TOML <-> dict round trip (STYLE.md 12).

A run config has these sections::

    [data]   name (a toy set, "gmm-ring", "points" with `path`, "digits", "images" with
             `path`), n_train, n_test, seed; image sets: size, channels, hflip, labels,
             dequantize (model the discrete levels by uniform dequantisation) and logit
    [model]  family ("diffusion", "nice", "realnvp", "glow", "cnf", "vae"); diffusion:
             preset, optional overrides path / parameterization / noise / weighting, each a
             registry name with an optional `<piece>_options` table of constructor arguments;
             num_classes (0 = unconditional), label_dropout (classifier-free guidance)
    [net]    name ("mlp", "unet", "dit") and that network's options (`NET_DEFAULTS`);
             the network of the diffusion and cnf families ("mlp" flattens images)
    [flow]   nice / realnvp / glow: couplings and their networks (`FlowSection`)
    [cnf]    cnf: trace estimator and ODE tolerances of training (`CNFSection`)
    [vae]    vae: latent size, MLP size, decoder likelihood (`VAESection`)
    [train]  the fields of `genlab.train.TrainConfig` (grad_clip = 0 turns clipping off)
    [sample] sampler, nfe, schedule (preset defaults when absent), n, seed
    [likelihood] how `genlab eval --likelihood` and `genlab bench likelihood` estimate the
             test log-likelihood (`LikelihoodSection`)

Every key is checked: an unknown key, a name missing from its registry or an impossible value
raises `ConfigError` with one line naming the key, e.g.
``train.stepz: unknown key (allowed: batch_size, ...)``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from genlab import registry
from genlab.diffusion.presets import Component, build_objective, get_preset
from genlab.errors import ConfigError
from genlab.ode.options import ADAPTIVE_METHODS as ADAPTIVE_ODE_METHODS
from genlab.ode.options import FIXED_GRID_METHODS as FIXED_GRID_ODE_METHODS
from genlab.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

_TRAIN_DEFAULTS = TrainConfig()
PIECES = ("path", "parameterization", "noise", "weighting")
PIECE_TABLES: dict[str, dict[str, Any]] = {
    "path": registry.PATHS,
    "parameterization": registry.PARAMETERIZATIONS,
    "noise": registry.NOISE_DISTRIBUTIONS,
    "weighting": registry.WEIGHTINGS,
}


def _one_of(value: str, names: Iterable[str]) -> str:
    allowed = sorted(names)
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _key_error(key: str, message: str) -> PydanticCustomError:
    """An error reported at `<section>.<key>` from a section-level validator."""
    return PydanticCustomError("key_error", message, {"key": key})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


VECTOR_SIZES = (20_000, 2_000)  # default (n_train, n_test) of the vector data sets
DIGITS_SIZE = 8  # side of scikit-learn's digits


class DataConfig(_Section):
    """Where the training and held-out test data come from (deterministic from `seed`).

    Vector sets: a toy set, "gmm-ring" or "points" (with `path`). Image sets: "digits"
    (scikit-learn's 8x8 digits, the fixed split of `genlab.data.digits`, scaled to [-1, 1];
    `n_train`/`n_test` not allowed) and "images" (`path`: a folder, .npy/.npz or MNIST IDX,
    read by `genlab.data.images.load_images`; `size` and `channels` apply to folders; the test
    split is `n_test` images, 10% by default). `hflip` adds mirrored copies of the training
    images; `labels` uses the class labels (needed by a class-conditional model).

    Likelihoods of image data: pixels are discrete levels (17 for digits, 256 for 8-bit
    images). `dequantize = true` makes the model a continuous density of uniformly
    dequantised levels (`genlab.discrete.Dequantized`: it sees 2s - 1 in [-1, 1), or
    logit(a + (1 - 2a) s) with `logit = a`), so its `log_prob` bounds the probability of the
    discrete pixels. Digits with validation on (`train.val_every > 0` and no
    `train.val_fraction`) hold out the last 144 of the 1437 training images for it (the
    split of the flows_digits protocol); the test split is never used for selection.
    """

    name: str = "moons"
    path: str | None = None  # "points": a .npy or .csv file (N, D); "images": see above
    n_train: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=2)
    seed: int = Field(0, ge=0)
    size: int | None = Field(None, ge=1)
    channels: int | None = None
    hflip: bool = False
    labels: bool = False
    dequantize: bool = False  # image sets: a continuous model of the discrete levels
    logit: float | None = Field(None, ge=0, lt=0.5)  # dequantize: y = logit(a + (1-2a) s)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, registry.DATASETS)

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: int | None) -> int | None:
        if v is not None and v not in (1, 3):
            raise ValueError(f"must be 1 or 3 (got {v})")
        return v

    @property
    def is_image(self) -> bool:
        return self.name in registry.IMAGE_DATASETS

    @model_validator(mode="after")
    def _options_fit_the_set(self) -> DataConfig:
        needs_path = (registry.POINTS, registry.IMAGES)
        if self.name in needs_path and not self.path:
            raise _key_error("path", f"required when data.name = {self.name!r}")
        if self.name not in needs_path and self.path is not None:
            raise _key_error("path", f"only allowed with data.name = 'points' or 'images' "
                                     f"(got {self.name!r})")  # fmt: skip
        for key in ("size", "channels"):
            if getattr(self, key) is not None and self.name != registry.IMAGES:
                raise _key_error(key, f"only allowed with data.name = 'images' (got {self.name!r})")
        for key in ("hflip", "labels", "dequantize"):
            if getattr(self, key) and not self.is_image:
                raise _key_error(key, f"only for image data sets (got {self.name!r})")
        if self.logit is not None and not self.dequantize:
            raise _key_error("logit", "needs data.dequantize = true")
        if self.name == registry.DIGITS:
            for key in ("n_train", "n_test"):
                if getattr(self, key) is not None:
                    raise _key_error(key, "digits has a fixed split (1437 train / 360 test); "
                                          "leave it unset")  # fmt: skip
        return self

    def vector_sizes(self) -> tuple[int, int]:
        """(n_train, n_test) of a vector data set, defaults filled in."""
        n_train, n_test = VECTOR_SIZES
        return self.n_train or n_train, self.n_test or n_test


DIFFUSION = "diffusion"
FLOWS = ("nice", "realnvp", "glow")
FAMILIES = (DIFFUSION, *FLOWS, "cnf", "vae")
_DIFFUSION_KEYS = ("preset", "path", "path_options", "parameterization",
                   "parameterization_options", "noise", "noise_options", "weighting",
                   "weighting_options", "num_classes", "label_dropout")  # fmt: skip


class ModelConfig(_Section):
    """The model family; for diffusion a preset (`genlab.diffusion.presets.PRESETS`) with any
    piece replaced by name (the other families take their options from their own section)."""

    family: str = DIFFUSION
    preset: str = "flow-matching"
    path: str | None = None
    path_options: dict[str, Any] = Field(default_factory=dict)
    parameterization: str | None = None
    parameterization_options: dict[str, Any] = Field(default_factory=dict)
    noise: str | None = None
    noise_options: dict[str, Any] = Field(default_factory=dict)
    weighting: str | None = None
    weighting_options: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(0, ge=0)  # > 0: class-conditional on labels 0..num_classes-1
    label_dropout: float = Field(0.0, ge=0, lt=1)  # > 0: labels -> null (= num_classes) w.p.

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        return _one_of(v, FAMILIES)

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        return _one_of(v, registry.PRESETS)

    @property
    def is_diffusion(self) -> bool:
        return self.family == DIFFUSION

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.PATHS)

    @field_validator("parameterization")
    @classmethod
    def _param(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.PARAMETERIZATIONS)

    @field_validator("noise")
    @classmethod
    def _noise(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.NOISE_DISTRIBUTIONS)

    @field_validator("weighting")
    @classmethod
    def _weighting(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.WEIGHTINGS)

    def component(self, piece: str) -> Component | None:
        """The override of one piece, or None to keep the preset's.

        Options without a name adjust the preset's own piece (merged over its options).
        """
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
    def _buildable(self) -> ModelConfig:
        if not self.is_diffusion:
            for key in _DIFFUSION_KEYS:
                if key in self.model_fields_set:
                    raise _key_error(key, f"only for model.family = 'diffusion' "
                                          f"(got {self.family!r})")  # fmt: skip
            return self
        if self.label_dropout > 0 and self.num_classes == 0:
            raise _key_error("label_dropout", "needs a class-conditional model (num_classes > 0)")
        for piece in PIECES:  # each override on its own, so the error names its key
            comp = self.component(piece)
            if comp is not None:
                _try_build(PIECE_TABLES[piece], comp, f"{piece}_options")
        try:
            build_objective(self.preset, **self.components())
        except (ConfigError, ValueError, TypeError) as err:
            raise _key_error("preset", _braces(str(err))) from None
        return self


def _braces(text: str) -> str:
    """pydantic formats messages with str.format-like templates: keep braces literal."""
    return text.replace("{", "(").replace("}", ")")


def _try_build(table: dict[str, Any], comp: Component, key: str) -> None:
    try:
        table[comp.name](**comp.options)
    except (ConfigError, ValueError, TypeError) as err:
        raise _key_error(key, f"{comp.name!r}: {_braces(str(err))}") from None


NET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 256, "depth": 3, "time_dim": 64, "dropout": 0.0},
    "unet": {"channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1,
             "attention_levels": (1,), "head_dim": 32, "dropout": 0.0, "use_checkpoint": False},
    "dit": {"patch_size": 2, "hidden": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 4.0,
            "use_checkpoint": False},
}  # fmt: skip


class NetConfig(_Section):
    """The network (a key of `registry.NETS`) and its options; unset options take the
    defaults of `NET_DEFAULTS`, and an option of another network is an error."""

    name: str = "mlp"
    hidden: int | None = Field(None, ge=1)  # mlp, dit
    depth: int | None = Field(None, ge=1)  # mlp, dit
    time_dim: int | None = Field(None, ge=2)  # mlp
    channels: int | None = Field(None, ge=1)  # unet
    channel_mult: tuple[int, ...] | None = None  # unet
    num_res_blocks: int | None = Field(None, ge=1)  # unet
    attention_levels: tuple[int, ...] | None = None  # unet
    head_dim: int | None = Field(None, ge=1)  # unet
    dropout: float | None = Field(None, ge=0, lt=1)  # mlp, unet
    patch_size: int | None = Field(None, ge=1)  # dit
    num_heads: int | None = Field(None, ge=1)  # dit
    mlp_ratio: float | None = Field(None, gt=0)  # dit
    use_checkpoint: bool | None = None  # unet, dit

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, registry.NETS)

    def options(self) -> dict[str, Any]:
        """Every option of this network: the ones set, over `NET_DEFAULTS`."""
        defaults = NET_DEFAULTS[self.name]
        set_ = {k: getattr(self, k) for k in defaults if getattr(self, k) is not None}
        return {**defaults, **set_}

    @model_validator(mode="after")
    def _options_of_the_net(self) -> NetConfig:
        allowed = NET_DEFAULTS[self.name]
        for key in type(self).model_fields:
            if key != "name" and getattr(self, key) is not None and key not in allowed:
                raise _key_error(key, f"not an option of net {self.name!r} "
                                      f"(options: {', '.join(sorted(allowed))})")  # fmt: skip
        opts = self.options()
        if self.name == "unet":
            mult, levels = opts["channel_mult"], opts["attention_levels"]
            if not mult or min(mult) < 1:
                raise _key_error("channel_mult", f"must be positive integers (got {list(mult)})")
            bad = [lv for lv in levels if not 0 <= lv < len(mult)]
            if bad:
                raise _key_error("attention_levels",
                                 f"levels {bad} outside 0..{len(mult) - 1}")  # fmt: skip
        if self.name == "dit" and (opts["hidden"] % 4 or opts["hidden"] % opts["num_heads"]):
            got = f"got {opts['hidden']}, {opts['num_heads']} heads"
            raise _key_error("hidden", f"must be a multiple of 4 and of num_heads ({got})")
        return self


class FlowSection(_Section):
    """Normalizing flows (`genlab.flows.architectures`). Images: `levels` scales, each with
    `steps` couplings (realnvp; plus `checkerboard` couplings at full resolution) or Glow
    steps (actnorm, 1x1 convolution, coupling), conditioners are CNNs of width `hidden`.
    Vectors: `steps` couplings (Glow steps) with MLP conditioners of `layers` x `hidden`.
    NICE: `steps` additive couplings of MLPs `layers` x `hidden` over the flattened data,
    then the diagonal scaling. `scale` bounds affine log-scales (default: tanh for realnvp,
    sigmoid for glow); `dropout` acts in the image conditioners and NICE's MLPs."""

    steps: int = Field(8, ge=1)
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    levels: int = Field(2, ge=1)
    checkerboard: int = Field(4, ge=0)
    scale: Literal["tanh", "sigmoid"] | None = None
    lu: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)


class CNFSection(_Section):
    """FFJORD training (`genlab.flows.cnf.ContinuousFlow`): the divergence by the exact
    trace or Hutchinson's estimator with `probes` draws of `probe` noise, dopri5 (or another
    adaptive `method`) at `rtol`/`atol`, or a fixed-grid `method` (e.g. "rk4") with time step
    `step_size`. Likelihood evaluation always integrates with dopri5 at the `[likelihood]`
    tolerances, so a model trained on a coarse grid is scored as the continuous flow it is.
    Maximum likelihood on a coarse grid can exploit the discretisation error (the grid's
    "density" is not normalised): its training loss then falls far below the true NLL; use
    `likelihood.select = "nll"` to validate on the adaptive estimate."""

    trace: Literal["exact", "hutchinson"] = "hutchinson"
    probe: Literal["rademacher", "gaussian"] = "rademacher"
    probes: int = Field(1, ge=1)
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-3, gt=0)
    method: str = "dopri5"
    step_size: float | None = Field(None, gt=0, le=1)  # fixed-grid methods: the time step

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return _one_of(v, ADAPTIVE_ODE_METHODS + FIXED_GRID_ODE_METHODS)

    @model_validator(mode="after")
    def _step_size_with_fixed_grid(self) -> CNFSection:
        fixed = self.method in FIXED_GRID_ODE_METHODS
        if fixed and self.step_size is None:
            raise ValueError(f"method {self.method!r} is fixed-grid: set cnf.step_size")
        if not fixed and self.step_size is not None:
            raise ValueError(f"step_size is only for fixed-grid methods, not {self.method!r}")
        return self


class VAESection(_Section):
    """Gaussian VAE with MLP encoder and decoder (`genlab.autoencoders.VAE.with_mlp`).
    `decoder`: "auto" is the discretised logistic over the data's levels for image data
    (a probability of the discrete pixels) and a Gaussian with predicted variance otherwise."""

    latent: int = Field(16, ge=1)
    hidden: int = Field(512, ge=1)
    depth: int = Field(2, ge=1)
    decoder: Literal["auto", "discretized_logistic", "gaussian", "bernoulli"] = "auto"


class LikelihoodSection(_Section):
    """Test log-likelihood settings (`genlab.eval.likelihood`). Dequantised image data average
    `draws` fixed dequantisation draws (seeds `seed`, `seed` + 1, ...); `n` limits the test
    examples (None: all). ODE families (diffusion, cnf) use the exact trace or Hutchinson
    with `probes` Rademacher probes and dopri5 at `rtol`/`atol`; the VAE reports the ELBO
    (`elbo_draws` posterior draws) and the IWAE bound with `k` importance samples.
    `select`: "loss" validates on the training loss, "nll" on this likelihood of the
    validation data (one draw, `val_n` examples; the diffusion loss is no likelihood)."""

    draws: int = Field(10, ge=1)
    seed: int = Field(1000, ge=0)
    n: int | None = Field(None, ge=1)
    trace: Literal["exact", "hutchinson"] = "hutchinson"
    probes: int = Field(1, ge=1)
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    k: int = Field(1000, ge=1)
    elbo_draws: int = Field(10, ge=1)
    select: Literal["loss", "nll"] = "loss"
    val_n: int | None = Field(None, ge=1)


class TrainSection(_Section):
    """Mirrors `genlab.train.TrainConfig`; `grad_clip = 0` disables clipping."""

    steps: int = Field(_TRAIN_DEFAULTS.steps, ge=1)
    batch_size: int = Field(_TRAIN_DEFAULTS.batch_size, ge=1)
    lr: float = Field(_TRAIN_DEFAULTS.lr, gt=0)
    weight_decay: float = Field(_TRAIN_DEFAULTS.weight_decay, ge=0)
    betas: tuple[float, float] = _TRAIN_DEFAULTS.betas
    warmup_steps: int = Field(_TRAIN_DEFAULTS.warmup_steps, ge=0)
    grad_clip: float = Field(_TRAIN_DEFAULTS.grad_clip or 0.0, ge=0)
    grad_accum: int = Field(_TRAIN_DEFAULTS.grad_accum, ge=1)
    ema_decay: float = Field(_TRAIN_DEFAULTS.ema_decay, ge=0, lt=1)
    bf16: bool = _TRAIN_DEFAULTS.bf16
    seed: int = Field(_TRAIN_DEFAULTS.seed, ge=0)
    checkpoint_every: int = Field(_TRAIN_DEFAULTS.checkpoint_every, ge=1)
    log_every: int = Field(_TRAIN_DEFAULTS.log_every, ge=1)
    keep_checkpoints: int = Field(_TRAIN_DEFAULTS.keep_checkpoints, ge=1)
    progress: bool = _TRAIN_DEFAULTS.progress
    val_every: int = Field(_TRAIN_DEFAULTS.val_every, ge=0)
    patience: int = Field(_TRAIN_DEFAULTS.patience, ge=0)
    val_seed: int = Field(_TRAIN_DEFAULTS.val_seed, ge=0)
    val_fraction: float = Field(_TRAIN_DEFAULTS.val_fraction, ge=0, lt=1)
    select: Literal["last", "best"] = "last"
    val_use_ema: bool = _TRAIN_DEFAULTS.val_use_ema
    max_seconds: float = Field(_TRAIN_DEFAULTS.max_seconds, ge=0)
    time_clock: Literal["wall", "cpu"] = "wall"

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1) (got {list(v)})")
        return v

    def to_train_config(self) -> TrainConfig:
        values = self.model_dump()
        return TrainConfig(**values)


class SampleSection(_Section):
    """Default sampling settings of a run; None means the preset's default."""

    sampler: str | None = None
    nfe: int | None = Field(None, ge=1)
    schedule: str | None = None
    n: int = Field(2_000, ge=1)
    seed: int = Field(0, ge=0)

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.SAMPLERS)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, registry.GRIDS)


_SECTIONS: dict[str, type[_Section]] = {"flow": FlowSection, "cnf": CNFSection,
                                        "vae": VAESection}  # fmt: skip


class RunConfig(_Section):
    """A whole run: data, model, net, training and sampling."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    flow: FlowSection | None = None
    cnf: CNFSection | None = None
    vae: VAESection | None = None
    likelihood: LikelihoodSection = Field(default_factory=LikelihoodSection)

    @model_validator(mode="after")
    def _sections_agree(self) -> RunConfig:
        data, net, model = self.data, self.net, self.model
        family = model.family
        own = {"flow": family in FLOWS, "cnf": family == "cnf", "vae": family == "vae"}
        for section, allowed in own.items():
            if getattr(self, section) is None and allowed:
                setattr(self, section, _SECTIONS[section]())
            elif getattr(self, section) is not None and not allowed:
                raise _key_error(section, f"not a section of model.family = {family!r}")
        if "net" in self.model_fields_set and family not in (DIFFUSION, "cnf"):
            raise _key_error("net", f"model.family = {family!r} has no [net] (its networks "
                                    f"are set in its own section)")  # fmt: skip
        if data.is_image and family != "vae" and family != DIFFUSION and not data.dequantize:
            raise _key_error("data.dequantize", f"model.family = {family!r} is a density of "
                                                "continuous data: set data.dequantize = true "
                                                "for image data")  # fmt: skip
        image_net = net.name in registry.IMAGE_NETS
        if image_net and not data.is_image:
            raise _key_error("net.name", f"{net.name!r} is for image data "
                                         f"(data.name = {data.name!r} is vector data)")  # fmt: skip
        size = DIGITS_SIZE if data.name == registry.DIGITS else data.size
        patch = net.options().get("patch_size") if net.name == "dit" else None
        if patch is not None and size is not None and size % patch:
            raise _key_error("net.patch_size", f"must divide the image size {size} (got {patch})")
        if model.num_classes > 0 and not data.labels:
            raise _key_error("model.num_classes", "a class-conditional model needs labels: "
                                                  "set data.labels = true")  # fmt: skip
        if data.labels and model.num_classes == 0:
            raise _key_error("data.labels", "labels are used only by a class-conditional "
                                            "model: set model.num_classes")  # fmt: skip
        return self

    @property
    def is_image(self) -> bool:
        return self.data.is_image

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML types; unset optional values (None) and the keys of other
        families (a flow's [net], a VAE's preset) are left out, so the dict validates again."""
        values = self.model_dump(mode="json", exclude_none=True)
        if not self.model.is_diffusion:
            for key in _DIFFUSION_KEYS:
                values["model"].pop(key, None)
        if self.model.family not in (DIFFUSION, "cnf"):
            values.pop("net", None)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Validate a plain dict; errors become one-line `ConfigError`s naming the key."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, cls)) from None

    @classmethod
    def from_toml(cls, text: str) -> RunConfig:
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"invalid TOML: {err}") from None
        return cls.from_dict(values)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


# ----------------------------------------------------------------------------- loading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is one line naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: invalid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror})") from None


def parse_value(text: str) -> Any:
    """A TOML literal (`100`, `1e-3`, `true`, `[0.9, 0.99]`, `"x"`), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(values: dict[str, Any], item: str) -> None:
    """Apply one `section.key=value` (dotted keys reach into tables) to `values` in place."""
    key, sep, raw = item.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(f"--set {item!r}: expected key.sub=value, e.g. train.steps=100")
    table = values
    for i, part in enumerate(parts[:-1]):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, not a table")
    table[parts[-1]] = parse_value(raw.strip())


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML run config, apply `--set` overrides, validate."""
    values = read_toml(path)
    for item in overrides:
        apply_override(values, item)
    return RunConfig.from_dict(values)


# ----------------------------------------------------------------------------- errors


def _fields_at(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Keys allowed in the table at `loc` (empty if it is not a config section)."""
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        kinds = [
            a
            for a in (get_args(field.annotation) or (field.annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]  # X or X | None
        if not kinds:
            return []
        model = kinds[0]
    return sorted(model.model_fields)


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false",
               "string": "a string", "dict": "a table", "model": "a table",
               "tuple": "a list", "list": "a list"}  # fmt: skip
_COMPARE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
            "less_than_equal": "<="}  # fmt: skip


def _got(value: Any) -> str:
    return "a table" if isinstance(value, dict) else repr(value)


def _explain(err: Any, root: type[BaseModel]) -> str:
    """The message part (after the key) of one pydantic error."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(root, err["loc"][:-1])
        return f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind in ("value_error", "key_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in _COMPARE:
        bound = next(iter(ctx.values()))
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {_COMPARE[kind]} {bound} (got {_got(value)})"
    if kind == "missing":
        if err["loc"] and isinstance(err["loc"][-1], int):
            return "too few items"
        return "required key is missing"
    base = re.split(r"_(?:type|parsing|from_float)$", kind)[0]
    if base in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[base]} (got {_got(value)})"
    return f"{err['msg']} (got {_got(value)})"


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line: the first error's dotted key and what is allowed there."""
    errors = err.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    if first["loc"] and isinstance(first["loc"][-1], int):
        loc.pop()  # an item of a list: name the list
    if first["type"] == "key_error":
        loc.append(str((first.get("ctx") or {})["key"]))
    message = f"{'.'.join(loc) or 'config'}: {_explain(first, root)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error(s))"
    return " ".join(message.split())


# ----------------------------------------------------------------------------- TOML output

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ConfigError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def _toml_table(lines: list[str], keys: list[str], table: dict[str, Any]) -> None:
    lines.append("[" + ".".join(_toml_key(k) for k in keys) + "]")
    for key, value in table.items():
        if value is not None and not (isinstance(value, dict) and not value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    lines.append("")


def dumps_toml(values: dict[str, Any]) -> str:
    """A dict of tables (one level, as `RunConfig.to_dict` gives) as TOML text."""
    lines: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            _toml_table(lines, [key], value)
        else:
            lines.insert(0, f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines)
