"""genlab: deep generative models with one set of interfaces.

The public API: a denoiser is any callable D(x, sigma, cond=None) -> x0_hat in the
canonical coordinates x = x0 + sigma * eps; `sample` runs any genlab sampler on it with a
budget of network evaluations, and `log_prob` integrates its probability-flow ODE.

Names are imported on first use (importing `genlab` alone loads no torch), so the command
line answers at once.
"""

from typing import TYPE_CHECKING

from genlab._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "GaussianMixture": "genlab.data.gmm",
    "Denoiser": "genlab.diffusion.denoiser",
    "fit_grid": "genlab.diffusion.fitted",
    "GRID_OBJECTIVES": "genlab.diffusion.grid_objectives",
    "log_prob": "genlab.diffusion.likelihood",
    "Diffusion": "genlab.diffusion.model",
    "PRESETS": "genlab.diffusion.presets",
    "SAMPLERS": "genlab.diffusion.sample",
    "sample": "genlab.diffusion.sample",
    "GRIDS": "genlab.diffusion.schedules",
    "GenerativeModel": "genlab.protocol",
    "TrainConfig": "genlab.train.config",
    "fit": "genlab.train.fitting",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:  # the names for type checkers and editors
    from genlab.data.gmm import GaussianMixture as GaussianMixture
    from genlab.diffusion.denoiser import Denoiser as Denoiser
    from genlab.diffusion.likelihood import log_prob as log_prob
    from genlab.diffusion.model import Diffusion as Diffusion
    from genlab.diffusion.presets import PRESETS as PRESETS
    from genlab.diffusion.sample import SAMPLERS as SAMPLERS
    from genlab.diffusion.sample import sample as sample
    from genlab.diffusion.schedules import GRIDS as GRIDS
    from genlab.protocol import GenerativeModel as GenerativeModel
    from genlab.train.config import TrainConfig as TrainConfig
    from genlab.train.fitting import fit as fit
