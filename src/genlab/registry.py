"""The names a config file or a command-line flag can use, by kind.

Code calls genlab's objects directly; names exist only so that a TOML file or a flag can
refer to them, and every name a config accepts is checked against one of these tuples. No
config reaches an object outside genlab's own tables (no imports by name, no `globals()`).

The objects live with their code, each in a table with exactly these keys (checked by
`tests/test_registry.py`):

| names | table of objects |
|---|---|
| SAMPLERS | `genlab.diffusion.sample.SAMPLERS` |
| GRIDS | `genlab.diffusion.schedules.GRIDS` |
| PRESETS | `genlab.diffusion.presets.PRESETS` |
| PATHS | `genlab.diffusion.paths.PATHS` |
| PARAMETERIZATIONS | `genlab.diffusion.parameterization.PARAMETERIZATIONS` |
| NOISE_DISTRIBUTIONS, WEIGHTINGS | `genlab.diffusion.objectives` |
| TOY_DATASETS | `genlab.data.toy.TOY_DATASETS` |
| TEXT_ENCODERS | `genlab.text.encoder.ENCODERS` |

They are listed here, apart from their objects, so that a config can be checked (and a
mistake reported) without loading torch. The model families have their own table,
`genlab.families`, and the networks theirs, `genlab.nets.table`.
"""

from __future__ import annotations

__all__ = [
    "CAPTION_SOURCES",
    "DATASETS",
    "DIGITS",
    "DIGIT_CAPTIONS",
    "GMM_RING",
    "GRIDS",
    "IMAGES",
    "IMAGE_DATASETS",
    "METADATA_CAPTIONS",
    "NOISE_DISTRIBUTIONS",
    "PARAMETERIZATIONS",
    "PATHS",
    "POINTS",
    "PRESETS",
    "SAMPLERS",
    "SCHEDULES",
    "TEXT_ENCODERS",
    "TOY_DATASETS",
    "WEIGHTINGS",
]

SAMPLERS: tuple[str, ...] = (
    "euler", "heun", "ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "rk45", "ddpm",
    "euler_ancestral", "edm_stochastic", "sde_euler_maruyama", "predictor_corrector",
    "langevin",
)  # fmt: skip
GRIDS: tuple[str, ...] = ("karras", "loglinear", "uniform_t")
# the schedules a config or flag can name: the grid families and a grid fitted to the model
# (`genlab.diffusion.grid_search.FITTED`)
SCHEDULES: tuple[str, ...] = (*GRIDS, "fitted")
PRESETS: tuple[str, ...] = (
    "ddpm", "ddim", "edm", "vp-sde", "ve-sde", "flow-matching", "rectified-flow",
)  # fmt: skip
PATHS: tuple[str, ...] = ("linear", "cosine", "vp", "ve", "edm", "ddpm")
PARAMETERIZATIONS: tuple[str, ...] = ("eps", "x0", "v", "velocity", "score", "edm")
NOISE_DISTRIBUTIONS: tuple[str, ...] = (
    "uniform_t", "uniform_k", "lognormal", "logit_normal", "log_uniform",
)  # fmt: skip
WEIGHTINGS: tuple[str, ...] = ("uniform", "snr", "min_snr", "edm")
TEXT_ENCODERS: tuple[str, ...] = ("all-MiniLM-L6-v2",)
TOY_DATASETS: tuple[str, ...] = (
    "moons", "circles", "swissroll", "8gaussians", "checkerboard", "pinwheel", "spirals",
    "rings",
)  # fmt: skip

# data sets that are not plain toy samplers: an analytic mixture and point-cloud files
GMM_RING = "gmm-ring"
POINTS = "points"
# image data sets: scikit-learn's 8x8 digits (fixed split) and images from a path
DIGITS = "digits"
IMAGES = "images"
IMAGE_DATASETS: tuple[str, ...] = (DIGITS, IMAGES)
DATASETS: tuple[str, ...] = (*sorted(TOY_DATASETS), GMM_RING, POINTS, *IMAGE_DATASETS)
# caption sources of text-conditioned runs (`data.captions`) and the data set each needs:
# phrasings of the digit labels, or an image folder's metadata.jsonl
DIGIT_CAPTIONS = "digits"
METADATA_CAPTIONS = "metadata"
CAPTION_SOURCES: dict[str, str] = {DIGIT_CAPTIONS: DIGITS, METADATA_CAPTIONS: IMAGES}
