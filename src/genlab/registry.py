"""Flat name -> object tables for configs and the command line (STYLE.md principle 8).

Code calls the objects directly; these tables only exist so that a TOML file or a flag can
name them. Every name a config accepts is validated against one of these keys.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from genlab.data.toy import TOY_DATASETS
from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS
from genlab.diffusion.presets import PRESETS
from genlab.diffusion.sample import SAMPLERS
from genlab.diffusion.schedules import GRIDS
from genlab.nets.mlp import MLP

NETS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP}

# data sets that are not plain toy samplers: an analytic mixture and point-cloud files
GMM_RING = "gmm-ring"
POINTS = "points"
DATASETS: tuple[str, ...] = (*sorted(TOY_DATASETS), GMM_RING, POINTS)

__all__ = [
    "DATASETS",
    "GMM_RING",
    "GRIDS",
    "NETS",
    "NOISE_DISTRIBUTIONS",
    "PARAMETERIZATIONS",
    "PATHS",
    "POINTS",
    "PRESETS",
    "SAMPLERS",
    "TOY_DATASETS",
    "WEIGHTINGS",
]
