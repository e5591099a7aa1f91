"""genlab: deep generative models with one set of interfaces.

The public API: a denoiser is any callable D(x, sigma, cond=None) -> x0_hat in the
canonical coordinates x = x0 + sigma * eps; `sample` runs any genlab sampler on it with a
budget of network evaluations (on a named grid, an explicit one or one `fit_grid` fitted to
the denoiser), and `log_prob` integrates its probability-flow ODE.
"""

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.fitted import fit_grid
from genlab.diffusion.grid_objectives import GRID_OBJECTIVES
from genlab.diffusion.likelihood import log_prob
from genlab.diffusion.model import Diffusion
from genlab.diffusion.presets import PRESETS
from genlab.diffusion.sample import SAMPLERS, sample
from genlab.diffusion.schedules import GRIDS
from genlab.protocol import GenerativeModel
from genlab.train import TrainConfig, fit

__version__ = "0.1.0"

__all__ = [
    "GRIDS",
    "GRID_OBJECTIVES",
    "PRESETS",
    "SAMPLERS",
    "Denoiser",
    "Diffusion",
    "GaussianMixture",
    "GenerativeModel",
    "TrainConfig",
    "fit",
    "fit_grid",
    "log_prob",
    "sample",
    "__version__",
]
