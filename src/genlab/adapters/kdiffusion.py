"""k-diffusion denoisers as genlab denoisers.

k-diffusion (Crowson) states its models in the coordinates of Karras et al. (2022): a
denoiser is called as ``model(x, sigma, **extra_args)`` with x = x0 + sigma * eps and
sigma of shape (B,), and returns the x0 estimate -- genlab's canonical denoiser exactly
(``docs/architecture.md``). Its wrappers of discrete-time models (``CompVisDenoiser``,
``DiscreteEpsDDPMDenoiser``, ...) and its own ``layers.Denoiser`` all follow it, so the
only work left is the conditioning: genlab passes one ``cond`` value, k-diffusion takes
keyword arguments (``cond=...`` for CompVis models, ``class_labels=...`` for its image
models, anything for a custom model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class KDiffusionDenoiser(torch.nn.Module):
    """``D(x, sigma, cond) = model(x, sigma, **extra)`` for a k-diffusion denoiser ``model``.

    ``extra`` is ``cond`` itself when it is a dict (its keys are the model's keywords),
    nothing when it is None, and ``{cond_key: cond}`` otherwise. ``sigma_min`` /
    ``sigma_max`` default to the model's attributes of those names (k-diffusion's
    discrete-schedule wrappers have them), so ``genlab.sample`` needs no range.
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        *,
        cond_key: str = "cond",
        sigma_min: float | None = None,
        sigma_max: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.cond_key = cond_key
        self.sigma_min = _float_or_none(sigma_min, getattr(model, "sigma_min", None))
        self.sigma_max = _float_or_none(sigma_max, getattr(model, "sigma_max", None))

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        if cond is None:
            extra: dict[str, Any] = {}
        elif isinstance(cond, dict):
            extra = dict(cond)
        else:
            extra = {self.cond_key: cond}
        return self.model(x, sigma, **extra)  # (B, ...)


def _float_or_none(given: float | None, attribute: Any) -> float | None:
    """The range bound given, else the model's attribute (a float or 0-d tensor), else None."""
    value = given if given is not None else attribute
    return None if value is None else float(value)
