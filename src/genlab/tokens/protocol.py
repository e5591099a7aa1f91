"""The interface between a tokenizer and a model of its codes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """Images (B, C, H, W) in [-1, 1] <-> code grids (B, h, w) of indices 0..K-1.

    `decoder_log_prob(x, codes)` is ln p(x | codes) in nats per example, (B,): a probability
    of the discrete pixels (e.g. a discretised logistic over the data's levels centred on
    the reconstruction), so that with a deterministic encoder
    ln P(x) >= ln p(x | z(x)) + ln p_prior(z(x)) bounds the pixels' log-probability."""

    codebook_size: int  # K
    grid: tuple[int, int]  # (h, w)

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, h, w) int64 codes."""
        ...

    def decode(self, codes: Tensor) -> Tensor:
        """(B, h, w) int64 codes -> (B, C, H, W) reconstructions (the decoder's mean)."""
        ...

    def decoder_log_prob(self, x: Tensor, codes: Tensor) -> Tensor:
        """ln p(x | codes) in nats per example, (B,)."""
        ...
