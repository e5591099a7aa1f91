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
from genlab.nets.dit import DiT
from genlab.nets.mlp import MLP
from genlab.nets.unet import UNet

NETS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "unet": UNet, "dit": DiT}
IMAGE_NETS: tuple[str, ...] = ("unet", "dit")  # networks over (B, C, H, W) images

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
    "IMAGE_NETS",
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
