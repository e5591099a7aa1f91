"""Run configuration: typed sections with a TOML <-> dict round trip and one-line errors.

`load_config(path, overrides)` reads a TOML file, applies `--set key=value` overrides and
validates it into a `RunConfig`; `RunConfig.to_toml()` writes it back. The sections:
`genlab.config.sections` (data, model, train, sample, likelihood), the family sections
(`genlab.families`) and `[net]` (`genlab.nets.configs`); `genlab.config.run` routes a
config's tables to them and checks the rules between sections.
"""

from genlab.config.errors import format_validation_error, validate_section
from genlab.config.run import NetConfig, RunConfig, check_sections, load_config
from genlab.config.sections import (
    DataConfig,
    LikelihoodSection,
    ModelConfig,
    SampleSection,
)
from genlab.config.toml import apply_override, dumps_toml, parse_value, read_toml, tomllib

__all__ = [
    "DataConfig",
    "LikelihoodSection",
    "ModelConfig",
    "NetConfig",
    "RunConfig",
    "SampleSection",
    "apply_override",
    "check_sections",
    "dumps_toml",
    "format_validation_error",
    "load_config",
    "parse_value",
    "read_toml",
    "tomllib",
    "validate_section",
]
