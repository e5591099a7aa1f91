"""Models from other libraries as genlab denoisers.

genlab's samplers, grids, guidance and likelihood see only the canonical denoiser
``D(x, sigma, cond) -> x0_hat`` (x = x0 + sigma * eps, Karras et al. 2022), so a foreign
model needs nothing but that one conversion:

- :mod:`genlab.adapters.diffusers`: a diffusers ``UNet2DModel`` / ``UNet2DConditionModel``
  with its DDPM-type scheduler's config (``DiffusersDenoiser``), and the grid of any
  diffusers scheduler (``scheduler_grid``); needs ``pip install genlab[diffusers]``.
- :mod:`genlab.adapters.kdiffusion`: a k-diffusion denoiser ``model(x, sigma, **extra)``
  already speaks this convention; ``KDiffusionDenoiser`` only maps ``cond`` to its keywords.

The submodules are imported on demand, so genlab never needs these libraries itself.
"""
