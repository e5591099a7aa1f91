"""Packages that export names lazily: every name resolves to the object of its module, and no
exported name is also a submodule's name (importing that submodule would set the package
attribute to the module and hide the exported object)."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

LAZY = ("genlab", "genlab.train", "genlab.runs")


@pytest.mark.parametrize("package", LAZY)
def test_exports_resolve_and_shadow_no_submodule(package: str) -> None:
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        if name.startswith("__"):
            continue
        assert importlib.util.find_spec(f"{package}.{name}") is None, f"{package}.{name}"
        value = getattr(pkg, name)
        module = importlib.import_module(pkg._EXPORTS[name])
        assert value is getattr(module, name)
