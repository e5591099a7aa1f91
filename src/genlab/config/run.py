"""A whole run config: the common sections, the family's own section and the network.

    [data]       where the data come from (`DataConfig`)
    [model]      family = a name of `genlab.families`; num_classes, label_dropout; the
                 diffusion family keeps its options here too (preset, path, ...)
    [<section>]  the family's options, e.g. [flow] for nice/realnvp/glow, [cnf], [vae]
    [net]        name = a name of `genlab.nets.table.NETS` and that network's options
                 (families that take a network: diffusion, cnf)
    [train]      the fields of `genlab.train.TrainConfig`
    [sample]     default sampler, nfe, schedule, n, seed
    [likelihood] how `genlab eval --likelihood` estimates the test log-likelihood
    [text]       text-conditioned runs (data.captions): the frozen text encoder, what the
                 network sees of a caption (tokens, pooled, both), caption dropout

Every key is checked: an unknown key, a name missing from its table or an impossible value
raises `ConfigError` with one line naming the key, e.g.
``train.stepz: unknown key (allowed: batch_size, ...)``. What a section holds is declared
once, by its owner; this module only routes tables to their owners and checks the rules
that span sections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from genlab import families
from genlab.config.errors import section_keys, validate_section
from genlab.config.sections import (
    DataConfig,
    LikelihoodSection,
    ModelConfig,
    SampleSection,
    TextSection,
)
from genlab.config.toml import apply_override, dumps_toml, read_toml, tomllib
from genlab.errors import ConfigError
from genlab.families import IMAGE, VECTOR, Family
from genlab.nets.table import NETS, NetSpec
from genlab.train.config import TrainConfig

__all__ = ["NetConfig", "RunConfig", "load_config"]

COMMON_TABLES = ("data", "model", "net", "train", "sample", "likelihood", "text")


@dataclass(frozen=True)
class NetConfig:
    """`[net]`: the network's name and its options (an instance of its options class)."""

    name: str = "mlp"
    options: Any = None

    @property
    def spec(self) -> NetSpec:
        return NETS[self.name]

    def label(self) -> str:
        """A few words for tables, e.g. "MLP 256x3"."""
        return self.spec.label(self.options)

    def to_dict(self) -> dict[str, Any]:
        values = {k: v for k, v in self.spec.user_options(self.options).items() if v is not None}
        return {"name": self.name, **values}

    @classmethod
    def from_dict(cls, values: Any) -> NetConfig:
        if not isinstance(values, Mapping):
            raise ConfigError(f"net: must be a table (got {values!r})")
        raw = dict(values)
        name = raw.pop("name", "mlp")
        if not isinstance(name, str):
            raise ConfigError(f"net.name: must be a string (got {name!r})")
        if name not in NETS:
            raise ConfigError(f"net.name: {name!r} is not one of {', '.join(sorted(NETS))}")
        spec = NETS[name]
        options = sorted(k for k in section_keys(spec.options) if k not in spec.derived)
        for key in raw:
            if key in spec.derived:
                raise ConfigError(f"net.{key}: set from the data and the model, not by a config")
            if key not in options:
                raise ConfigError(f"net.{key}: not an option of net {name!r} "
                                  f"(options: {', '.join(options)})")  # fmt: skip
        return cls(name, validate_section(spec.options, raw, "net", ["name", *options]))


def _dump(section: BaseModel) -> dict[str, Any]:
    return section.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: data, model family and its options, network, training, sampling and
    likelihood settings. Build it with `from_dict` / `from_toml` / `load_config`."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    options: BaseModel = field(default_factory=lambda: families.get("diffusion").options())
    net: NetConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleSection = field(default_factory=SampleSection)
    likelihood: LikelihoodSection = field(default_factory=LikelihoodSection)
    text: TextSection | None = None

    @property
    def family(self) -> Family:
        return families.get(self.model.family)

    @property
    def is_image(self) -> bool:
        return self.data.is_image

    def data_levels(self) -> int | None:
        """Pixel levels of image data (17 for digits, 256 for 8-bit images); None for vectors."""
        return self.data.levels

    def net_label(self) -> str:
        return "no network" if self.net is None else self.net.label()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML types; unset optional values (None) are left out, so the dict
        validates again into an equal config."""
        values: dict[str, Any] = {"data": _dump(self.data), "model": _dump(self.model)}
        table = self.family.table
        values[table] = {**values.get(table, {}), **_dump(self.options)}
        if self.net is not None:
            values["net"] = self.net.to_dict()
        for name in ("train", "sample", "likelihood"):
            values[name] = _dump(getattr(self, name))
        if self.text is not None:
            values["text"] = _dump(self.text)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Validate a plain dict; errors are one-line `ConfigError`s naming the key."""
        return parse(values)

    @classmethod
    def from_toml(cls, text: str) -> RunConfig:
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"invalid TOML: {err}") from None
        return cls.from_dict(values)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def updated(self, overrides: Sequence[str]) -> RunConfig:
        """This config with `section.key=value` overrides applied, validated again."""
        values = self.to_dict()
        for item in overrides:
            apply_override(values, item)
        return parse(values)


# ----------------------------------------------------------------------------- parsing


def _table(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = values.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{name}: must be a table (got {table!r})")
    return dict(table)


def _family_of(model: Mapping[str, Any]) -> Family:
    name = model.get("family", ModelConfig.model_fields["family"].default)
    if not isinstance(name, str):
        raise ConfigError(f"model.family: must be a string (got {name!r})")
    try:
        return families.get(name)
    except ConfigError as err:
        raise ConfigError(f"model.family: {err}") from None


def _check_tables(values: Mapping[str, Any], family: Family) -> None:
    sections = {f.table for f in families.all_families()}
    allowed = sorted(set(COMMON_TABLES) | sections)
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown key (allowed: {', '.join(allowed)})")
        if key in sections and key not in COMMON_TABLES and key != family.table:
            raise ConfigError(f"{key}: not a section of model.family = {family.name!r}")


def _family_options(values: Mapping[str, Any], family: Family) -> tuple[dict, dict]:
    """(the [model] keys of ModelConfig, the raw options of the family)."""
    model = _table(values, "model")
    common = {k: v for k, v in model.items() if k in ModelConfig.model_fields}
    rest = {k: v for k, v in model.items() if k not in ModelConfig.model_fields}
    if family.table == "model":
        return common, rest
    for key in rest:
        owners = [f.name for f in families.all_families()
                  if f.table == "model" and key in f.options.model_fields]  # fmt: skip
        if owners:
            raise ConfigError(f"model.{key}: only for model.family = {owners[0]!r} "
                              f"(got {family.name!r})")  # fmt: skip
        allowed = ", ".join(sorted(ModelConfig.model_fields))
        raise ConfigError(f"model.{key}: unknown key (allowed: {allowed})")
    return common, _table(values, family.table)


def parse(values: Mapping[str, Any]) -> RunConfig:
    """Validate a config dict section by section, then the rules between sections."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config: must be a table of sections (got {type(values).__name__})")
    family = _family_of(_table(values, "model"))
    _check_tables(values, family)
    common, own = _family_options(values, family)
    model_keys = sorted({*ModelConfig.model_fields, *family.options.model_fields}) \
        if family.table == "model" else None  # fmt: skip
    # the common sections first: their mistakes are reported without loading the model code
    data = validate_section(DataConfig, _table(values, "data"), "data")
    model = validate_section(ModelConfig, common, "model", model_keys)
    if "net" in values and not family.uses_net:
        raise ConfigError(f"net: model.family = {family.name!r} has no [net] (its networks "
                          "are set in its own section)")  # fmt: skip
    net = NetConfig.from_dict(values.get("net", {})) if family.uses_net else None
    train = validate_section(TrainConfig, _table(values, "train"), "train")
    sample = validate_section(SampleSection, _table(values, "sample"), "sample")
    likelihood = validate_section(LikelihoodSection, _table(values, "likelihood"), "likelihood")
    text = _text_section(values, data)
    options = validate_section(family.options, own, family.table, model_keys)
    cfg = RunConfig(data=data, model=model, options=options, net=net, train=train,
                    sample=sample, likelihood=likelihood, text=text)  # fmt: skip
    check_sections(cfg)
    if family.check is not None:
        family.check(cfg)
    return cfg


def _text_section(values: Mapping[str, Any], data: DataConfig) -> TextSection | None:
    """`[text]` of a text-conditioned run (defaults when the table is absent); None for
    other runs, which may not have one."""
    if data.captions is None:
        if "text" in values:
            raise ConfigError("text: only for text-conditioned runs (set data.captions)")
        return None
    return validate_section(TextSection, _table(values, "text"), "text")


def _check_text(cfg: RunConfig) -> None:
    """A text-conditioned run needs a family and a network that take text."""
    if cfg.text is None:
        return
    if not cfg.family.text_conditional:
        raise ConfigError(f"data.captions: model.family = {cfg.family.name!r} is not "
                          "text-conditional")  # fmt: skip
    if cfg.model.num_classes > 0:
        raise ConfigError("model.num_classes: a text-conditioned run takes captions, not "
                          "class labels")  # fmt: skip
    if cfg.net is not None and "context_dim" not in cfg.net.spec.derived:
        raise ConfigError(f"net.name: text conditioning needs a network with cross-attention "
                          f"and a conditioning embedding (unet or dit), got "
                          f"{cfg.net.name!r}")  # fmt: skip


def check_sections(cfg: RunConfig) -> None:
    """The rules that span sections (each error names the key to change)."""
    data, model, family = cfg.data, cfg.model, cfg.family
    kind = IMAGE if data.is_image else VECTOR
    if kind not in family.data:
        raise ConfigError(f"model.family: {family.name!r} needs {' or '.join(family.data)} "
                          f"data (data.name = {data.name!r} is {kind} data)")  # fmt: skip
    if data.is_image and family.dequantize_images and not data.dequantize:
        raise ConfigError(f"data.dequantize: model.family = {family.name!r} is a density of "
                          "continuous data: set data.dequantize = true for image data")
    if cfg.net is not None:
        spec = cfg.net.spec
        if spec.image_only and not data.is_image:
            raise ConfigError(f"net.name: {spec.name!r} is for image data "
                              f"(data.name = {data.name!r} is vector data)")  # fmt: skip
        bad = spec.size_error(cfg.net.options, data.image_size)
        if bad is not None:
            raise ConfigError(f"net.{bad[0]}: {bad[1]}")
    _check_text(cfg)
    if model.num_classes > 0 and not family.conditional:
        raise ConfigError(f"model.num_classes: model.family = {family.name!r} is not "
                          "class-conditional")  # fmt: skip
    if model.num_classes > 0 and not data.labels:
        raise ConfigError("model.num_classes: a class-conditional model needs labels: "
                          "set data.labels = true")  # fmt: skip
    if data.labels and model.num_classes == 0:
        raise ConfigError("data.labels: labels are used only by a class-conditional model: "
                          "set model.num_classes")  # fmt: skip


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML run config, apply `--set` overrides, validate."""
    values = read_toml(path)
    for item in overrides:
        apply_override(values, item)
    return RunConfig.from_dict(values)
