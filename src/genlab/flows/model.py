"""``NormalizingFlow``: a flow, a base density and optional image preprocessing.

Change of variables (Dinh et al., *NICE*, 2014, eq. 1; *Real NVP*, 2017, eq. 3):
    ln p_X(x) = ln p_Z(f(x)) + ln|det df/dx|,
where f = flow o preprocess and p_Z is N(0, I), or a Gaussian mixture
(`genlab.flows.mixture`) for data made of separate clusters. With ``preprocess=Logit()``
the logit log-determinant is part of ln|det|, so ``log_prob`` is the density of the
dequantised data x in [0, 1)^D.

Discrete image data (``levels`` set, e.g. 17 for the 8x8 digits): ``loss(v)`` takes the
integer-valued data v in {0..levels-1}^D, draws x = (v + u)/levels with fresh u ~ U[0,1)^D
(Theis et al. 2016) and returns -ln p_X(x) + D ln(levels): the per-example NLL in **nats
of the discrete data** (an upper bound, by Jensen). Divide by D ln 2 for bits per dim.
Without ``levels`` the loss is -ln p_X(x) in nats. Sampling: z ~ N(0, T^2 I) (Glow sec. 5.3
calls T the temperature; with a mixture base, a component, then its Gaussian with scales
times T), x = f^{-1}(z); with ``levels`` and ``quantize=True`` samples are
returned in the data space of ``loss`` (integers 0..levels-1 as floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from genlab.data.dequantize import bits_per_dim, dequantize
from genlab.density import level_shift, standard_normal_log_prob
from genlab.flows.base import FlowLayer
from genlab.flows.mixture import GaussianMixtureBase
from genlab.protocol import GenerativeModel

__all__ = ["NormalizingFlow", "dequantized_bpd"]


class NormalizingFlow(GenerativeModel):
    """Flow model over data of shape ``event_shape`` (see module docstring).

    ``z_shape``: shape of the flow's output per example; default the flat (D,), which every
    builder in :mod:`genlab.flows.architectures` produces. ``base``: None for N(0, I), or a
    `GaussianMixtureBase` over the flat latents, fitted to the first training batch's."""

    loss_is_nll = True

    def __init__(
        self,
        flow: FlowLayer,
        event_shape: Sequence[int],
        *,
        levels: int | None = None,
        preprocess: FlowLayer | None = None,
        z_shape: Sequence[int] | None = None,
        base: GaussianMixtureBase | None = None,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.preprocess = preprocess
        self.event_shape = tuple(int(s) for s in event_shape)
        self.dim = math.prod(self.event_shape)
        self.z_shape = tuple(int(s) for s in z_shape) if z_shape is not None else (self.dim,)
        if math.prod(self.z_shape) != self.dim:
            raise ValueError(f"z_shape {self.z_shape} does not match event {self.event_shape}")
        if levels is not None and levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.levels = levels
        if base is not None and base.dim != self.dim:
            raise ValueError(f"the base is over {base.dim} dims, the flow's latents {self.dim}")
        self.base = base

    def transform(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = flow(preprocess(x)) and the total ln|det| (B,)."""
        logdet = x.new_zeros(x.shape[0])
        if self.preprocess is not None:
            x, logdet = self.preprocess(x, cond)
        z, ld = self.flow(x, cond)
        return z, logdet + ld

    def log_prob(
        self, x: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """ln p_X(x) in nats per example, (B,); x in [0,1)^D when ``levels`` is set. Exact and
        deterministic: ``generator`` is accepted (as by every family) and unused."""
        z, logdet = self.transform(x, cond)
        if self.base is None:
            return standard_normal_log_prob(z) + logdet
        flat = z.reshape(z.shape[0], -1)
        if self.training and not bool(self.base.initialised):
            self.base.initialise(flat)
        return self.base.log_prob(flat) + logdet

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example NLL in nats, (B,); of the discrete data when ``levels`` is set."""
        if self.levels is None:
            return -self.log_prob(x, cond)
        xd = dequantize(x, self.levels)
        return -self.log_prob(xd, cond) + level_shift(self.dim, self.levels)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        quantize: bool = True,
    ) -> Tensor:
        """n samples (n, *event_shape) from the base at `temperature` (module docstring)."""
        if self.base is not None:
            z = self.base.sample(n, generator=generator, temperature=temperature)
            z = z.view(n, *self.z_shape)
        else:
            p = next(self.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
            dtype = p.dtype if p is not None else torch.get_default_dtype()
            z = torch.randn(n, *self.z_shape, generator=generator, device=device, dtype=dtype)
            z = temperature * z
        x = self.flow.inverse(z, cond)
        if self.preprocess is not None:
            x = self.preprocess.inverse(x, cond)
        x = x.reshape(n, *self.event_shape)
        if self.levels is not None and quantize:
            x = torch.floor(x * self.levels).clamp(0, self.levels - 1)
        return x


@torch.no_grad()
def dequantized_bpd(
    model: NormalizingFlow,
    v: Tensor,
    seeds: Iterable[int],
    *,
    batch_size: int = 512,
    cond: Tensor | None = None,
) -> Tensor:
    """Per-image bpd on discrete data v, averaging -ln p_X over fixed dequantisation draws.

    For each seed, u ~ U[0,1) is drawn for the whole of v from ``torch.Generator`` seeded
    with it; returns (N,) = (E_u[-ln p_X((v+u)/L)] + D ln L)/(D ln 2) (anchor protocol)."""
    if model.levels is None:
        raise ValueError("dequantized_bpd needs a model built with levels")
    seeds = list(seeds)
    nll = torch.zeros(v.shape[0], dtype=torch.float64)
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x = dequantize(v.cpu(), model.levels, generator=g).to(v.device)
        for i in range(0, v.shape[0], batch_size):
            c = None if cond is None else cond[i : i + batch_size]
            nll[i : i + batch_size] -= model.log_prob(x[i : i + batch_size], c).double().cpu()
    return torch.as_tensor(bits_per_dim(nll / len(seeds), model.dim, model.levels))
