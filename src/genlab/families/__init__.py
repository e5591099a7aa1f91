"""The family table: every model family genlab can train from a config, by name.

`model.family = "<name>"` in a config resolves here, and so does everything the application
layer does with a family (validating its section, building the model, estimating its
likelihood, sampling it, describing it in tables). Adding a family is one module that
defines a `genlab.families.base.Family` record plus one `register` call::

    from genlab import families
    families.register(Family(name="gaussian", description="...", options=GaussianOptions,
                              build=build, describe=lambda cfg: "full covariance"))

Only genlab's own table resolves names, so a config can never import arbitrary code.
"""

from __future__ import annotations

from genlab.errors import ConfigError
from genlab.families import (
    autoencoder,
    cnf,
    diffusion,
    flows,
    latent_diffusion,
    token_prior,
    tokenizer,
    vae,
)
from genlab.families.base import (
    IMAGE,
    VECTOR,
    Family,
    LikelihoodBound,
    exact_likelihood,
    exact_sampling,
    net_for,
)

__all__ = [
    "IMAGE",
    "VECTOR",
    "Family",
    "LikelihoodBound",
    "all_families",
    "exact_likelihood",
    "exact_sampling",
    "get",
    "names",
    "net_for",
    "register",
    "unregister",
]

_TABLE: dict[str, Family] = {}


def register(family: Family, *, replace: bool = False) -> Family:
    """Add `family` to the table (an existing name needs `replace=True`); returns it."""
    if family.name in _TABLE and not replace:
        raise ValueError(f"family {family.name!r} is already registered")
    taken = {f.table: f.options for f in _TABLE.values() if f.name != family.name}
    if taken.get(family.table, family.options) is not family.options:
        raise ValueError(f"section [{family.table}] already holds other options")
    _TABLE[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family (for tests that register their own)."""
    _TABLE.pop(name, None)


def get(name: str) -> Family:
    """The record of family `name`; ConfigError names the known ones."""
    if name not in _TABLE:
        raise ConfigError(f"{name!r} is not one of {', '.join(names())}")
    return _TABLE[name]


def names() -> list[str]:
    return sorted(_TABLE)


def all_families() -> tuple[Family, ...]:
    return tuple(_TABLE[n] for n in names())


for _family in (diffusion.FAMILY, *flows.FAMILIES, cnf.FAMILY, *vae.FAMILIES,
                *tokenizer.FAMILIES, token_prior.FAMILY, autoencoder.FAMILY,
                latent_diffusion.FAMILY):
    register(_family)
