"""Flat name -> object tables for configs and the command line.

Code calls the objects directly; these tables only exist so that a TOML file or a flag can
name them, and every name a config accepts is validated against one of their keys. No
config can reach an object outside them (no imports by name, no `globals()`). The model
families have their own table, `genlab.families`; the networks theirs, `genlab.nets.table`.
"""

from __future__ import annotations

from genlab.data.toy import TOY_DATASETS
from genlab.diffusion.grid_search import FITTED
from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS
from genlab.diffusion.presets import PRESETS
from genlab.diffusion.sample import SAMPLERS
from genlab.diffusion.schedules import GRIDS
from genlab.nets.table import NETS

# the schedules a config or flag can name: the grid families and a grid fitted to the model
SCHEDULES: tuple[str, ...] = (*GRIDS, FITTED)

# data sets that are not plain toy samplers: an analytic mixture and point-cloud files
GMM_RING = "gmm-ring"
POINTS = "points"
# image data sets: scikit-learn's 8x8 digits (fixed split) and images from a path
DIGITS = "digits"
IMAGES = "images"
IMAGE_DATASETS: tuple[str, ...] = (DIGITS, IMAGES)
DATASETS: tuple[str, ...] = (*sorted(TOY_DATASETS), GMM_RING, POINTS, *IMAGE_DATASETS)

__all__ = [
    "DATASETS",
    "DIGITS",
    "GMM_RING",
    "GRIDS",
    "IMAGES",
    "IMAGE_DATASETS",
    "NETS",
    "NOISE_DISTRIBUTIONS",
    "PARAMETERIZATIONS",
    "PATHS",
    "POINTS",
    "PRESETS",
    "SAMPLERS",
    "SCHEDULES",
    "TOY_DATASETS",
    "WEIGHTINGS",
]
