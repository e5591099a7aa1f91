"""Exponential moving average (EMA) of a model's parameters.

After each optimizer step the shadow weights move towards the live weights,

    ema <- decay * ema + (1 - decay) * theta,

so after n updates on a constant trajectory theta, ema_n = theta + decay^n (ema_0 - theta).
The EMA weights are what sampling uses (Karras et al. 2022, "Elucidating the Design Space",
sec. 5; Ho et al. 2020 used decay 0.9999). Buffers (e.g. batch-norm statistics) are copied,
not averaged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copy of a module's state dict; parameters averaged with `torch._foreach_lerp_`.

    Args:
        model: the module whose parameters are tracked; the shadow starts as a copy of it.
        decay: weight of the old average in each update, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, Tensor] = _clone_state(model)
        names = [name for name, _ in model.named_parameters()]
        self._params: list[Tensor] = [p for _, p in model.named_parameters()]
        self._ema_params: list[Tensor] = [self.shadow[name] for name in names]
        # non-persistent buffers are not in the state dict: the model rebuilds them itself
        self._buffer_names = [name for name, _ in model.named_buffers() if name in self.shadow]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """One EMA step towards the current weights of `model` (the module given at creation).

        With `step` (the number of updates made before this one) the decay is warmed up as
        min(decay, (1 + step) / (10 + step)), so early in training the average is not
        dominated by the initial weights (the common EMA warm-up, as in TensorFlow's
        ExponentialMovingAverage with num_updates). Without it the decay is constant.
        """
        decay = self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))
        if self._ema_params:
            torch._foreach_lerp_(self._ema_params, self._params, 1.0 - decay)
        if self._buffer_names:
            buffers = dict(model.named_buffers())
            for name in self._buffer_names:
                self.shadow[name].copy_(buffers[name])

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow weights, keyed like `model.state_dict()` (tensors are shared, not copied)."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy saved shadow weights in place; keys must match exactly."""
        missing = sorted(set(self.shadow) - set(state))
        extra = sorted(set(state) - set(self.shadow))
        if missing or extra:
            raise KeyError(f"ema state mismatch: missing {missing}, unexpected {extra}")
        for name, tensor in self.shadow.items():
            tensor.copy_(state[name])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the weights of `model` with the EMA weights."""
        model.load_state_dict(self.shadow)


def _clone_state(model: nn.Module) -> dict[str, Tensor]:
    """Detached clones of the state dict; tied entries (same tensor) stay tied in the copy."""
    clones: dict[int, Tensor] = {}
    shadow: dict[str, Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key not in clones:
            clones[key] = tensor.detach().clone()
        shadow[name] = clones[key]
    return shadow
