"""Flat name -> object tables for configs and the command line.

Code calls the objects directly; these tables only exist so that a TOML file or a flag can
name them, and every name a config accepts is validated against one of their keys. No
config can reach an object outside them (no imports by name, no `globals()`). The model
families have their own table, `genlab.families`; the networks theirs, `genlab.nets.table`.
"""

from __future__ import annotations

from genlab.data.toy import TOY_DATASETS
from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS
from genlab.diffusion.presets import PRESETS
from genlab.diffusion.sample import SAMPLERS
from genlab.diffusion.schedules import GRIDS
from genlab.nets.table import NETS
from genlab.text.encoder import ENCODERS as TEXT_ENCODERS

# data sets that are not plain toy samplers: an analytic mixture and point-cloud files
GMM_RING = "gmm-ring"
POINTS = "points"
# image data sets: scikit-learn's 8x8 digits (fixed split) and images from a path
DIGITS = "digits"
IMAGES = "images"
IMAGE_DATASETS: tuple[str, ...] = (DIGITS, IMAGES)
DATASETS: tuple[str, ...] = (*sorted(TOY_DATASETS), GMM_RING, POINTS, *IMAGE_DATASETS)
# caption sources of text-conditioned runs: phrasings of the digit labels, or an image
# folder's metadata.jsonl
DIGIT_CAPTIONS = "digits"
METADATA_CAPTIONS = "metadata"
CAPTION_SOURCES: dict[str, str] = {DIGIT_CAPTIONS: DIGITS, METADATA_CAPTIONS: IMAGES}

__all__ = [
    "CAPTION_SOURCES",
    "DATASETS",
    "DIGIT_CAPTIONS",
    "DIGITS",
    "GMM_RING",
    "GRIDS",
    "IMAGES",
    "IMAGE_DATASETS",
    "METADATA_CAPTIONS",
    "NETS",
    "NOISE_DISTRIBUTIONS",
    "PARAMETERIZATIONS",
    "PATHS",
    "POINTS",
    "PRESETS",
    "SAMPLERS",
    "TEXT_ENCODERS",
    "TOY_DATASETS",
    "WEIGHTINGS",
]
