"""Guidance: wrappers that take a denoiser and return a denoiser, so that samplers need not
know about it.

Both wrappers are callables ``D'(x, sigma, cond) -> x0_hat`` in canonical coordinates
(x = x0 + sigma * eps, sigma of shape (B,)), so every sampler and `genlab.diffusion.sample`
works with them unchanged. They pass the wrapped denoiser's ``sigma_min``/``sigma_max``
through, so the sampling range need not be restated.

Guidance is easiest to read as a change of score, score = (D - x) / sigma^2:

- classifier-free guidance (Ho & Salimans 2022, eq. 6 and Alg. 2), in score form
  score_w = score(x) + w (score(x | y) - score(x)), is linear in D, hence
  D_w = D_uncond + w (D_cond - D_uncond). The condition y is a class label or a text
  context (`genlab.nets.context.Context`); the unconditional branch is the null label or
  the empty prompt, and a negative prompt takes the empty prompt's place (the guided score
  then moves away from the negative prompt, score_w = score(x | neg) + w (score(x | y) -
  score(x | neg)));
- classifier guidance (Dhariwal & Nichol 2021, Sec. 4 and Alg. 1-2; Song et al. 2021,
  Sec. 5, eq. 14: grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)) adds
  s * grad_x log p(y | x, sigma) to the score, hence D' = D + s sigma^2 grad_x log p(y | x).

NFE accounting. A budget (`genlab.diffusion.sample.sample(..., nfe=N)`) counts calls of the
denoiser it is given, so with a guided denoiser it counts *guided* calls: N guided calls.
A classifier-free guided call with w not in {0, 1} is one forward pass of the wrapped network
on a doubled batch (2B examples), i.e. the same number of network calls as unguided sampling
at twice the per-call batch (about twice the compute); w = 0 and w = 1 cost exactly one
unguided call. A classifier-guided call is one denoiser call plus one classifier forward
and backward pass. `evaluations_per_call` states the batch multiplier of each wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from genlab.diffusion import conditions
from genlab.diffusion.paths import append_dims

DenoiserLike = Callable[..., Tensor]
ClassifierLike = Callable[[Tensor, Tensor], Tensor]


def _sigma_vector(sigma: Tensor | float, x: Tensor) -> Tensor:
    """sigma as a (B,) tensor on x's device (a scalar is broadcast over the batch; a python
    float takes x's dtype)."""
    if isinstance(sigma, Tensor):
        s = sigma.to(x.device)
    else:
        s = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(
            f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(s.shape)}"
        )
    return s


def _labels(cond: Tensor | None, x: Tensor, missing: str) -> Tensor:
    """cond as (B,) labels on x's device; `missing` says what the wrapper needs them for."""
    if cond is None:
        raise ValueError(f"{missing}: pass cond (a (B,) long tensor)")
    cond = torch.as_tensor(cond, device=x.device)
    if cond.shape != (x.shape[0],):
        raise ValueError(f"cond must have shape ({x.shape[0]},), got {tuple(cond.shape)}")
    return cond


def _pass_through_range(wrapper: Any, denoiser: DenoiserLike) -> None:
    """Copy the wrapped denoiser's default sampling range, when it states one."""
    wrapper.sigma_min = getattr(denoiser, "sigma_min", None)
    wrapper.sigma_max = getattr(denoiser, "sigma_max", None)


class ClassifierFreeGuidance:
    """Classifier-free guidance, Ho & Salimans (2022), eq. 6, on the canonical denoiser.

    D_w(x, sigma, y) = D(x, sigma, u) + w [D(x, sigma, y) - D(x, sigma, u)]

    where the unconditional condition u is either ``null_label``, the class index the model
    saw in place of the label during training (`Diffusion(label_dropout=p, null_label=...)`,
    Ho & Salimans Alg. 1), or ``uncond``, a condition of the same kind as y: the empty
    prompt's context of a text model trained with caption dropout, or a negative prompt's
    (one row serves the whole batch). With this convention w = 1 is the conditional model
    and w = 0 the unconditional one; Ho & Salimans' own guidance strength is w - 1. Those two
    cases cost one call of the wrapped denoiser; otherwise the conditional and unconditional
    evaluations are made in one call on the concatenated batch (2B; contexts of different
    lengths are padded, their masks hide the padding), so ``evaluations_per_call`` is 2 (see
    the module docstring for how NFE budgets count it).

    Args:
        denoiser: ``D(x, sigma, cond) -> x0_hat`` taking (B,) long labels or a context as
            ``cond``.
        scale: the guidance weight w (a float; any real value, w > 1 sharpens).
        null_label: the label meaning "no class" (label conditions).
        uncond: the unconditional condition itself (instead of `null_label`): of the kind of
            `cond`, with 1 or B rows, or one example's tensor (e.g. the empty-prompt
            embedding (L, E) of a model taking (B, L, E)); a dict of those for a dict `cond`
            (e.g. the keyword arguments of a diffusers UNet, `genlab.adapters.diffusers`).
    """

    def __init__(
        self,
        denoiser: DenoiserLike,
        scale: float,
        null_label: int | None = None,
        *,
        uncond: Any = None,
    ) -> None:
        if (null_label is None) == (uncond is None):
            raise ValueError("classifier-free guidance needs one of null_label and uncond")
        self.denoiser = denoiser
        self.scale = float(scale)
        self.null_label = None if null_label is None else int(null_label)
        self.uncond = uncond
        self.sigma_min: float | None
        self.sigma_max: float | None
        _pass_through_range(self, denoiser)

    @property
    def evaluations_per_call(self) -> int:
        """Batch multiplier of one guided call: 1 for w in {0, 1}, else 2."""
        return 1 if self.scale in (0.0, 1.0) else 2

    def branches(self, cond: Any, x: Tensor) -> tuple[Any, Any]:
        """(conditional, unconditional) conditions for a batch of x; `cond` (labels (B,) or a
        condition with the batch interface of `genlab.diffusion.conditions`) checked."""
        if cond is None:
            raise ValueError("classifier-free guidance needs a condition: pass cond (class "
                             "labels (B,) or a context)")  # fmt: skip
        if self.uncond is None:
            cond = _labels(cond, x, "classifier-free guidance with a null label needs labels")
            return cond, torch.full_like(cond, self.null_label)  # (B,)
        if conditions.batch_size(cond) != x.shape[0]:
            raise ValueError(f"cond has {conditions.batch_size(cond)} rows for a batch of "
                             f"{x.shape[0]}")  # fmt: skip
        return cond, conditions.expand_like(self.uncond, cond)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        cond, uncond = self.branches(cond, x)
        sigma = _sigma_vector(sigma, x)
        if self.scale == 1.0:
            return self.denoiser(x, sigma, cond)
        if self.scale == 0.0:
            return self.denoiser(x, sigma, uncond)
        both = self.denoiser(
            torch.cat([x, x]), torch.cat([sigma, sigma]), conditions.concat(cond, uncond)
        )  # (2B, ...)
        d_cond, d_uncond = both.chunk(2)  # (B, ...) each
        return d_uncond + self.scale * (d_cond - d_uncond)


class ClassifierGuidance:
    """Classifier guidance with a noise-aware classifier, Dhariwal & Nichol (2021), Sec. 4 and
    Alg. 1-2, written for the denoiser through Song et al. (2021), Sec. 5, eq. 14:

        score'(x | y) = score(x) + s grad_x log p(y | x, sigma)
        D'(x, sigma, y) = D(x, sigma) + s sigma^2 grad_x log p(y | x, sigma).

    At s = 1 with the exact noisy posterior p(y | x, sigma) this is the exact class-conditional
    denoiser (Bayes' rule); s > 1 sharpens towards the class.

    Args:
        denoiser: ``D(x, sigma, cond) -> x0_hat``. It is called with ``cond=None`` (an
            unconditional model) unless ``condition_denoiser`` is set, in which case it also
            receives the labels (guiding a conditional model, Dhariwal & Nichol Sec. 4.2).
        classifier: ``classifier(x, sigma) -> (B, C)`` logits or log-probabilities of the
            label given the canonical noisy state (e.g. `NoiseAwareClassifier`,
            `MixtureBayesClassifier`); they are normalised with a log-softmax here.
        scale: the guidance scale s.

    Gradients are enabled internally, so the wrapper works inside ``torch.no_grad()``
    sampling; only x is differentiated (classifier parameters get no ``.grad``).
    """

    evaluations_per_call: int = 1

    def __init__(
        self,
        denoiser: DenoiserLike,
        classifier: ClassifierLike,
        scale: float,
        *,
        condition_denoiser: bool = False,
    ) -> None:
        self.denoiser = denoiser
        self.classifier = classifier
        self.scale = float(scale)
        self.condition_denoiser = condition_denoiser
        self.sigma_min: float | None
        self.sigma_max: float | None
        _pass_through_range(self, denoiser)

    def log_likelihood_grad(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        """grad_x log p(y = cond | x, sigma), shape of x (Dhariwal & Nichol 2021, Alg. 1)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(xg, sigma), dim=-1)  # (B, C)
            picked = log_p.gather(1, cond.long()[:, None]).sum()  # examples are independent
            (grad,) = torch.autograd.grad(picked, xg)
        return grad.to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        cond = _labels(cond, x, "classifier guidance needs target labels")
        sigma = _sigma_vector(sigma, x)
        d = self.denoiser(x, sigma, cond if self.condition_denoiser else None)  # (B, ...)
        if self.scale == 0.0:
            return d
        grad = self.log_likelihood_grad(x, sigma, cond)  # (B, ...)
        s2 = append_dims(sigma.to(x.dtype) ** 2, x.ndim)  # (B, 1, ...)
        return d + self.scale * s2 * grad
