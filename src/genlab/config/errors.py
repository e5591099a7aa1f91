"""One-line error messages for config sections.

Every section of a run config is validated on its own (`validate_section`), so an error is
reported at `<section>.<key>` with what is allowed there, e.g.
``train.stepz: unknown key (allowed: batch_size, ...)`` or ``train.lr: must be > 0 (got -1)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from genlab.errors import ConfigError

__all__ = ["format_validation_error", "section_keys", "validate_section"]

T = TypeVar("T")

_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false",
               "string": "a string", "dict": "a table", "model": "a table",
               "tuple": "a list", "list": "a list", "dataclass": "a table"}  # fmt: skip
_COMPARE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
            "less_than_equal": "<="}  # fmt: skip
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")
_FIELD_MESSAGE = re.compile(r"^(\w+): (.*)$", re.S)  # "field: message" from a __post_init__


def section_keys(cls: type) -> list[str]:
    """The keys a section class accepts, sorted."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return sorted(cls.model_fields)
    if is_dataclass(cls):
        return sorted(f.name for f in fields(cls))
    return []


def _got(value: Any) -> str:
    return "a table" if isinstance(value, dict) else repr(value)


def _explain(err: Mapping[str, Any], allowed: Sequence[str]) -> str:
    """The message part (after the key) of one pydantic error."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in _UNKNOWN:
        return f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind in ("value_error", "key_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in _COMPARE:
        bound = next(iter(ctx.values()))
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {_COMPARE[kind]} {bound} (got {_got(value)})"
    if kind == "missing":
        if err["loc"] and isinstance(err["loc"][-1], int):
            return "too few items"
        return "required key is missing"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')} (got {_got(value)})"
    base = re.split(r"_(?:type|parsing|from_float)$", kind)[0]
    if base in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[base]} (got {_got(value)})"
    return f"{err['msg']} (got {_got(value)})"


def format_validation_error(
    err: ValidationError, where: str = "", allowed: Sequence[str] = ()
) -> str:
    """One line: the first error's dotted key (prefixed by `where`) and what is allowed."""
    errors = err.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    if first["loc"] and isinstance(first["loc"][-1], int):
        loc.pop()  # an item of a list: name the list
    message = _explain(first, allowed)
    if first["type"] == "key_error":
        loc.append(str((first.get("ctx") or {})["key"]))
    elif first["type"] == "value_error" and not loc:
        match = _FIELD_MESSAGE.match(message)  # a whole-object check naming its field
        if match:
            loc, message = [match.group(1)], match.group(2)
    key = ".".join(p for p in (where, *loc) if p)
    text = f"{key or 'config'}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error(s))"
    return " ".join(text.split())


def validate_section(
    cls: type[T], values: Any, where: str, allowed: Sequence[str] | None = None
) -> T:
    """`values` (a table of the config) validated into `cls` (a pydantic model or a
    dataclass); errors are one-line `ConfigError`s naming `<where>.<key>`."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: must be a table (got {_got(values)})")
    keys = list(allowed) if allowed is not None else section_keys(cls)
    try:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls.model_validate(dict(values))  # type: ignore[return-value]
        return TypeAdapter(cls).validate_python(dict(values))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where, keys)) from None
