"""`Diffusion`: every diffusion-type model (DDPM, DDIM, score SDEs, EDM, flow matching) as one
`GenerativeModel` over (network, path, parameterization, noise distribution, weighting)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from genlab.diffusion import likelihood
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.guidance import ClassifierFreeGuidance
from genlab.diffusion.objectives import DenoisingLoss
from genlab.diffusion.presets import Component, build_objective, get_preset
from genlab.diffusion.sample import sample as sample_with_budget
from genlab.nets.layers import drop_labels
from genlab.ode.options import ODEOptions
from genlab.protocol import GenerativeModel


class Diffusion(GenerativeModel):
    """A denoising model: `loss` is the denoising objective, `sample` integrates the
    probability-flow ODE (or an SDE) with any genlab sampler on the canonical denoiser.

    The network maps (x (B, *data_shape), time (B,), cond) to an output of the data's shape;
    what that output means is the parameterization's business.
    """

    def __init__(
        self,
        net: nn.Module,
        objective: DenoisingLoss,
        data_shape: tuple[int, ...],
        *,
        sampler: str = "heun",
        nfe: int = 35,
        schedule: str = "karras",
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        label_dropout: float = 0.0,
        null_label: int | None = None,
    ) -> None:
        super().__init__()
        if label_dropout > 0 and null_label is None:
            raise ValueError("label_dropout needs null_label (the class index meaning 'no class')")
        self.label_dropout, self.null_label = label_dropout, null_label
        self.net = net
        self.objective = objective
        self.data_shape = tuple(data_shape)
        self.sampler, self.nfe, self.schedule = sampler, nfe, schedule
        self.sigma_min = objective.path.sigma_min if sigma_min is None else sigma_min
        self.sigma_max = objective.path.sigma_max if sigma_max is None else sigma_max

    @classmethod
    def from_preset(
        cls,
        preset: str,
        net: nn.Module,
        data_shape: tuple[int, ...],
        *,
        path: Component | None = None,
        parameterization: Component | None = None,
        noise: Component | None = None,
        weighting: Component | None = None,
        label_dropout: float = 0.0,
        null_label: int | None = None,
    ) -> Diffusion:
        """A model of a named preset (`ddpm`, `ddim`, `edm`, `vp-sde`, `ve-sde`,
        `flow-matching`, `rectified-flow`), any piece replaceable."""
        p = get_preset(preset)
        objective = build_objective(
            preset, path=path, parameterization=parameterization, noise=noise, weighting=weighting
        )
        return cls(
            net,
            objective,
            data_shape,
            sampler=p.sampler,
            nfe=p.nfe,
            schedule=p.schedule,
            label_dropout=label_dropout,
            null_label=null_label,
        )

    @property
    def denoiser(self) -> Denoiser:
        """The canonical D(x, sigma, cond) of this model (built on demand; holds no weights)."""
        return Denoiser(
            self.net,
            self.objective.path,
            self.objective.parameterization,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
        )

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-example denoising loss. In training mode, class labels are replaced by the null
        label with probability `label_dropout`, so one network learns the conditional and
        the unconditional model (Ho & Salimans 2022, Alg. 1)."""
        if cond is not None and self.training and self.label_dropout > 0:
            cond = drop_labels(cond, self.label_dropout, self.null_label)  # type: ignore[arg-type]
        return self.objective(self.net, x, cond)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        nfe: int | None = None,
        schedule: str | None = None,
        guidance: float | None = None,
        options: dict[str, Any] | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> Tensor:
        """n samples with the model's default sampler, NFE budget and grid unless given.

        `guidance` is the classifier-free guidance scale w (1 = conditional model, 0 =
        unconditional; needs `cond` and a model trained with label dropout). `options` are
        the sampler's own knobs, e.g. {"eta": 0.5} for ddim.
        """
        device = next(self.net.parameters()).device
        noise = torch.randn((n, *self.data_shape), generator=generator, device=device)
        denoiser: Callable[..., Tensor] = self.denoiser
        if guidance is not None:
            if self.null_label is None:
                raise ValueError("guidance needs a model trained with label_dropout/null_label")
            denoiser = ClassifierFreeGuidance(self.denoiser, guidance, self.null_label)
        return sample_with_budget(
            denoiser,
            noise,
            sampler=sampler or self.sampler,
            nfe=nfe or self.nfe,
            schedule=schedule or self.schedule,
            path=self.objective.path,
            options=options,
            cond=cond,
            generator=generator,
            callback=callback,
        )

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        ode: ODEOptions | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log p(x) in nats per example (B,) by the probability-flow ODE (Song et al. 2021,
        Appendix D.2) over the model's sigma range unless given, with the divergence estimator
        and solver of `ode` (default: exact trace, dopri5); see
        `genlab.diffusion.likelihood.log_prob` for the approximations (x is taken as the state
        at sigma_min; the prior is N(0, sigma_max^2 I))."""
        return likelihood.log_prob(
            self.denoiser, x,
            sigma_min=self.sigma_min if sigma_min is None else sigma_min,
            sigma_max=self.sigma_max if sigma_max is None else sigma_max,
            cond=cond, ode=ode, generator=generator,
        )  # fmt: skip
