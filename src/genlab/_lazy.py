"""Lazy package attributes (PEP 562), so that importing a package loads no heavy module.

`genlab` and `genlab.train` export names whose modules import torch; the command line
imports `genlab` to answer `--help` and to report a bad config, which must be instant.
Each name is imported from its module the first time it is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) of a package whose attribute `name` is `name` in module
    `exports[name]` (imported on first use and then cached in the package)."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def dir_() -> list[str]:
        return sorted(exports)

    return getattr_, dir_
