"""A Gaussian-mixture base density for normalizing flows.

A flow with a standard normal base must tear its one mode apart to reach data made of
separate clusters, and a finite stack of smooth couplings does that badly: the mass it
leaves between the clusters is paid for in likelihood. With a mixture base

    p_Z(z) = sum_k pi_k N(z; mu_k, diag(s_k^2)),

the flow only has to shape each cluster (Izmailov et al. 2020, "Semi-Supervised Learning
with Normalizing Flows", use the same base). Weights, means and scales are learned with the
flow. Identical components at initialisation would get identical gradients for ever, so
the base is fitted by EM (scikit-learn's diagonal `GaussianMixture`) to the latents of the
first training batch (`initialise`, called once by `NormalizingFlow.log_prob` in training
mode); until then, and in a model that is never trained, it is the standard normal.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.density import LOG_2PI

__all__ = ["GaussianMixtureBase"]

MIN_SCALE = 1e-2  # floor of the fitted component scales, in units of the latents


class GaussianMixtureBase(nn.Module):
    """K diagonal Gaussians over flat latents (B, D): `log_prob`, `sample`, `initialise`."""

    def __init__(self, dim: int, components: int) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture base needs at least one component (got {components})")
        self.dim, self.components = dim, components
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.zeros(components, dim))
        self.log_scales = nn.Parameter(torch.zeros(components, dim))
        self.register_buffer("initialised", torch.tensor(False))

    def component_log_prob(self, z: Tensor) -> Tensor:
        """ln pi_k + ln N(z; mu_k, diag(s_k^2)) for every component, (B, K)."""
        u = (z.unsqueeze(1) - self.means) * torch.exp(-self.log_scales)  # (B, K, D)
        log_normal = -0.5 * (u * u).sum(-1) - self.log_scales.sum(-1) - 0.5 * self.dim * LOG_2PI
        return F.log_softmax(self.logits, 0) + log_normal

    def log_prob(self, z: Tensor) -> Tensor:
        """ln p_Z(z) per row, (B,)."""
        return torch.logsumexp(self.component_log_prob(z), dim=1)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """n latents (n, D): a component k ~ pi, then mu_k + temperature s_k eps."""
        pi = F.softmax(self.logits, 0)
        k = torch.multinomial(pi, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.dim, generator=generator, device=pi.device, dtype=pi.dtype)
        return self.means[k] + temperature * torch.exp(self.log_scales[k]) * eps

    @torch.no_grad()
    def initialise(self, z: Tensor) -> None:
        """Fit the mixture by EM to latents z (B, D), B >= K (a fixed seed: reproducible)."""
        from sklearn.mixture import GaussianMixture

        rows = z.detach().reshape(z.shape[0], -1).double().cpu().numpy()
        if rows.shape[0] < self.components:
            raise ValueError(
                f"a mixture base of {self.components} components is fitted to the first "
                f"batch, which has {rows.shape[0]} rows: use a larger batch or fewer components"
            )
        if not np.isfinite(rows).all():
            raise ValueError("the first batch's latents are not finite; cannot fit the mixture")
        gm = GaussianMixture(
            self.components, covariance_type="diag", reg_covar=MIN_SCALE**2, random_state=0
        ).fit(rows)
        like = self.means
        self.means.copy_(torch.as_tensor(gm.means_, dtype=like.dtype))
        self.log_scales.copy_(torch.as_tensor(0.5 * np.log(gm.covariances_), dtype=like.dtype))
        self.logits.copy_(torch.as_tensor(np.log(gm.weights_), dtype=like.dtype))
        self.initialised.fill_(True)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, components={self.components}"
