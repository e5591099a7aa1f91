"""Quantizers: continuous latents (B, D, h, w) -> codes (B, h, w) in 0..K-1 and back.

Every quantizer answers the same interface (`Quantizer`): `forward(z, step)` returns the
quantized latents with a gradient path to `z`, the codes and a per-example auxiliary loss;
`codes(z)` is the deterministic encoding; `embed(codes)` the latents of given codes. They run
in float32 with autocast off, whatever the caller's precision: nearest-neighbour search,
rounding and the codebook statistics are not safe in bfloat16 (an 8-bit mantissa cannot
tell neighbouring codes apart).

- `straight_through(z, q)`: the value of q with the gradient of z, z + sg(q - z)
  (Bengio et al. 2013; van den Oord et al. 2017, sec. 3.2, "we simply copy gradients from
  the decoder input z_q(x) to the encoder output z_e(x)").
- `rotation_trick(z, q)`: the value of q, the gradient of z rotated and rescaled onto q:
  sg(||q|| / ||z|| R) z with R the rotation taking z / ||z|| to q / ||q|| (Fifty et al.
  2024, "Restructuring vector quantization with the rotation trick", eq. 3 and sec. 4.2).
- `FSQ`: finite scalar quantization (Mentzer et al. 2023): each of d channels is bounded
  to L_i values and rounded; the codebook is the implicit product grid of prod(L_i) codes,
  with no parameters and no auxiliary loss.
- `GumbelQuantizer`: a relaxed one-hot over K codes (Gumbel-softmax, Jang et al. 2017;
  used as a tokenizer by Ramesh et al. 2021, DALL-E's dVAE), annealed temperature, optional
  hard straight-through samples, a KL term to the uniform prior.

The vector quantizer with a learned codebook is `genlab.tokens.vq.VectorQuantizer`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.autoencoders.categorical import (
    categorical_kl_uniform,
    gumbel_softmax,
    gumbel_temperature,
)

__all__ = [
    "FSQ",
    "GumbelQuantizer",
    "Quantized",
    "Quantizer",
    "channels_last",
    "channels_first",
    "rotation_trick",
    "straight_through",
]


@dataclass
class Quantized:
    """What a quantizer returns: latents `z_q` (B, D, h, w) whose value is the quantized
    latents and whose gradient reaches the encoder, the `codes` (B, h, w) int64 and the
    per-example auxiliary `loss` (B,) (codebook and commitment terms; zeros for FSQ)."""

    z_q: Tensor
    codes: Tensor
    loss: Tensor


def channels_last(z: Tensor) -> Tensor:
    """(B, D, h, w) -> (B, h, w, D)."""
    return z.permute(0, 2, 3, 1)


def channels_first(z: Tensor) -> Tensor:
    """(B, h, w, D) -> (B, D, h, w), contiguous."""
    return z.permute(0, 3, 1, 2).contiguous()


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """z + sg(q - z): the value of q, the identity Jacobian d out / d z (Bengio et al. 2013;
    van den Oord et al. 2017, sec. 3.2)."""
    return z + (q - z).detach()


def rotation_trick(z: Tensor, q: Tensor, eps: float = 1e-6) -> Tensor:
    """sg(lambda R) z over the last dimension, with lambda = ||q|| / ||z|| and R the rotation
    in the plane of z and q taking z^ = z / ||z|| to q^ = q / ||q|| (Fifty et al. 2024, eq. 3;
    the Householder form of sec. 4.2):

        R = I - 2 r r^T + 2 q^ z^T,   r = (z^ + q^) / ||z^ + q^||,

    so R z = ||z|| q^ and the output's value is q, while the gradient reaching z is
    lambda R^T times the gradient at q: its angle to the code and its norm ratio are kept.
    Antipodal pairs (z^ = -q^) have no unique rotation and fall back to the identity
    (straight-through scaled by lambda)."""
    z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)  # (..., 1)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    z_hat, q_hat = (z / z_norm).detach(), (q / q_norm).detach()  # (..., D)
    r = F.normalize(z_hat + q_hat, dim=-1, eps=eps).detach()  # (..., D)
    rz = z - 2 * (z * r).sum(-1, keepdim=True) * r + 2 * (z * z_hat).sum(-1, keepdim=True) * q_hat
    scale = (q_norm / z_norm).detach()  # (..., 1)
    return straight_through(scale * rz, q)  # exact value q; gradient of scale * R z


class Quantizer(nn.Module, ABC):
    """Latents (B, `dim`, h, w) <-> codes (B, h, w) in 0..`codebook_size` - 1.

    `forward` runs in float32 with autocast disabled and returns `Quantized`; training-time
    bookkeeping (codebook statistics, restarts) happens only in training mode. `codes` and
    `embed` are deterministic and change nothing."""

    dim: int
    codebook_size: int

    def forward(self, z: Tensor, step: int = 0) -> Quantized:
        """Quantize z (B, D, h, w); `step` is the training step (temperature annealing)."""
        with torch.autocast(z.device.type, enabled=False):
            return self.quantize(z.float(), step)

    def codes(self, z: Tensor) -> Tensor:
        """The deterministic codes of z (B, D, h, w): (B, h, w) int64."""
        with torch.autocast(z.device.type, enabled=False):
            return self.lookup(z.float())

    @abstractmethod
    def quantize(self, z: Tensor, step: int) -> Quantized:
        """float32 z (B, D, h, w) -> `Quantized`."""

    @abstractmethod
    def lookup(self, z: Tensor) -> Tensor:
        """float32 z (B, D, h, w) -> codes (B, h, w)."""

    @abstractmethod
    def embed(self, codes: Tensor) -> Tensor:
        """codes (B, h, w) -> quantized latents (B, D, h, w), float32."""

    def check_codes(self, codes: Tensor) -> Tensor:
        """`codes` as int64, or ValueError if any lies outside 0..K-1."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in 0..{self.codebook_size - 1}, got "
                             f"{int(codes.min())}..{int(codes.max())}")  # fmt: skip
        return codes


def _projection(n_in: int, n_out: int) -> nn.Module:
    """A 1x1 convolution between latent widths, or the identity when they agree."""
    return nn.Identity() if n_in == n_out else nn.Conv2d(n_in, n_out, 1)


class FSQ(Quantizer):
    """Finite scalar quantization (Mentzer et al. 2023, sec. 3 and appendix A.1).

    With levels L_1..L_d, channel i is bounded to f(z) = tanh(z + s_i) h_i - o_i,
    h_i = (L_i - 1)(1 - eps) / 2, o_i = 1/2 for even L_i (else 0), s_i = atanh(o_i / h_i)
    so that f(0) = 0 (s_i = 0 for L_i = 2, whose range (-1, 0) does not contain 0), and
    rounding gives exactly L_i integers (-L_i // 2 .. (L_i - 1) // 2), which are
    divided by L_i // 2 to lie in [-1, 1]. Rounding passes gradients straight through. The
    code of a latent is the mixed-radix number sum_i (q_i + L_i // 2) prod_{j<i} L_j, so
    K = prod L_i and every code is a point of the grid: no codebook to collapse, no
    auxiliary loss. With `dim` != d, 1x1 convolutions project to d channels and back."""

    def __init__(self, levels: Sequence[int], dim: int | None = None, eps: float = 1e-3) -> None:
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {list(levels)}")
        self.levels = tuple(int(v) for v in levels)
        self.dim = len(self.levels) if dim is None else dim
        self.codebook_size = math.prod(self.levels)
        lv = torch.tensor(self.levels, dtype=torch.float64)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        basis = torch.cumprod(torch.tensor((1, *self.levels[:-1])), 0)  # (d,)
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        ratio = offset / half_l  # > 1 only for L = 2 (the clamp keeps that branch finite)
        shift = torch.where(ratio < 1, torch.atanh(ratio.clamp(max=0.5)), 0.0)
        self.register_buffer("_shift", shift.float(), persistent=False)
        self.register_buffer("_half_width", (lv // 2).float(), persistent=False)
        self.register_buffer("_levels", lv.long(), persistent=False)
        self.register_buffer("_basis", basis.long(), persistent=False)
        self.project_in = _projection(self.dim, len(self.levels))
        self.project_out = _projection(len(self.levels), self.dim)

    def bound(self, z: Tensor) -> Tensor:
        """f(z) = tanh(z + s) h - o per channel, z (..., d)."""
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def _grid(self, z: Tensor) -> Tensor:
        """Rounded, normalised values in [-1, 1] with a straight-through gradient, (..., d)."""
        b = self.bound(z)
        return straight_through(b, torch.round(b)) / self._half_width

    def grid_to_codes(self, q: Tensor) -> Tensor:
        """Normalised grid values (..., d) -> codes (...)."""
        digits = torch.round(q * self._half_width + self._half_width).long()  # (..., d)
        return (digits * self._basis).sum(-1)

    def codes_to_grid(self, codes: Tensor) -> Tensor:
        """codes (...) -> normalised grid values (..., d), float32."""
        digits = (codes[..., None] // self._basis) % self._levels  # (..., d)
        return (digits.float() - self._half_width) / self._half_width

    def quantize(self, z: Tensor, step: int) -> Quantized:
        q = self._grid(channels_last(self.project_in(z)))  # (B, h, w, d)
        zero = z.new_zeros(z.shape[0])  # (B,): FSQ has no auxiliary loss
        return Quantized(self.project_out(channels_first(q)), self.grid_to_codes(q.detach()), zero)

    def lookup(self, z: Tensor) -> Tensor:
        return self.grid_to_codes(self._grid(channels_last(self.project_in(z))))

    def embed(self, codes: Tensor) -> Tensor:
        q = self.codes_to_grid(self.check_codes(codes))  # (B, h, w, d)
        return self.project_out(channels_first(q))


class GumbelQuantizer(Quantizer):
    """Relaxed one-hot codes (Jang et al. 2017, eq. 1; DALL-E's dVAE, Ramesh et al. 2021,
    sec. 2.1): a 1x1 convolution maps z to logits over K codes per position, a
    Gumbel-softmax sample y at temperature tau mixes the codebook, z_q = sum_k y_k e_k.

    tau = max(tau_min, tau0 exp(-rate * step)) is annealed with the training step
    (`genlab.autoencoders.categorical.gumbel_temperature`); `hard` uses the exact one-hot
    Gumbel-max sample forward and the relaxed gradient backward (straight-through
    Gumbel-softmax, Jang et al. sec. 2.2). The auxiliary loss is `kl_weight` times the KL
    of the code distribution to the uniform prior, averaged over positions. Outside
    training, and in `codes`, the code is argmax of the logits (no noise)."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        tau0: float = 1.0,
        tau_min: float = 0.5,
        rate: float = 1e-4,
        hard: bool = False,
        kl_weight: float = 5e-4,
    ) -> None:
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.tau0, self.tau_min, self.rate = tau0, tau_min, rate
        self.hard, self.kl_weight = hard, kl_weight
        self.to_logits = nn.Conv2d(dim, codebook_size, 1)
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / math.sqrt(dim))

    def temperature(self, step: int) -> float:
        return gumbel_temperature(step, tau0=self.tau0, rate=self.rate, tau_min=self.tau_min)

    def quantize(self, z: Tensor, step: int) -> Quantized:
        logits = channels_last(self.to_logits(z))  # (B, h, w, K)
        codes = logits.argmax(-1)  # (B, h, w)
        if not self.training:
            return Quantized(self.embed(codes), codes, z.new_zeros(z.shape[0]))
        y = gumbel_softmax(logits, self.temperature(step), hard=self.hard)  # (B, h, w, K)
        z_q = channels_first(y @ self.codebook)  # (B, D, h, w)
        positions = logits.shape[1] * logits.shape[2]
        kl = categorical_kl_uniform(logits.flatten(1, 2)) / positions  # (B,)
        return Quantized(z_q, codes, self.kl_weight * kl)

    def lookup(self, z: Tensor) -> Tensor:
        return self.to_logits(z).argmax(1)  # (B, h, w)

    def embed(self, codes: Tensor) -> Tensor:
        return channels_first(F.embedding(self.check_codes(codes), self.codebook))
