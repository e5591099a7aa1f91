"""TOML in and out: reading a config file, `--set key=value` overrides, writing a config back.

Reading and overrides work on plain dicts (validation is `genlab.config.run`'s job); every
problem with a user's file is a `ConfigError` of one line naming the file or the key.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

__all__ = ["apply_override", "dumps_toml", "parse_value", "read_toml", "tomllib"]


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
