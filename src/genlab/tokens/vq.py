"""The vector quantizer of VQ-VAE and VQGAN and the machinery that keeps its codebook healthy.

Nearest-neighbour quantization z_q = e_k, k = argmin_j ||z_e - e_j|| (van den Oord et al.
2017, "Neural discrete representation learning", eq. 1-2) with

- the straight-through estimator (sec. 3.2) or the rotation trick (Fifty et al. 2024);
- the VQ-VAE objective's two latent terms (eq. 3): the codebook term ||sg(z_e) - e||^2 and
  the commitment term beta ||z_e - sg(e)||^2, beta on the ENCODER term (the weighting of
  the paper; not the swapped weighting of some public implementations);
- EMA codebook updates instead of the codebook term (appendix A.1, eq. 6-8; Razavi et al.
  2019, VQ-VAE-2), with Laplace smoothing of the cluster sizes;
- k-means initialisation of the codebook from the encoder outputs of the first training
  batch (Lloyd 1982, k-means++ seeding; as in Dhariwal et al. 2020, Jukebox, and
  Zeghidour et al. 2021, SoundStream, sec. 3.2);
- dead-code restart: a code unused for `dead_after` consecutive training steps is reset to
  an encoder output of the current batch (Dhariwal et al. 2020, sec. 2.2; Zeghidour et al.
  2021, sec. 3.2), drawn in proportion to its squared quantization error (the D^2
  sampling of k-means++, Arthur & Vassilvitskii 2007);
- a low-dimensional lookup space (a linear projection to `codebook_dim`) and l2-normalised
  (cosine-similarity) lookup (Yu et al. 2022, "Vector-quantized image modeling with
  improved VQGAN", sec. 3.2, "factorized and l2-normalized codes").

All of it runs in float32 (see `genlab.tokens.quantizers.Quantizer`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.tokens.quantizers import (
    Quantized,
    Quantizer,
    _projection,
    channels_first,
    channels_last,
    rotation_trick,
    straight_through,
)

__all__ = ["VectorQuantizer", "ema_codebook_update", "kmeans", "nearest_codes"]

Gradient = Literal["straight_through", "rotation"]


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """argmin_k ||z_n - e_k||^2 for z (N, d), codebook (K, d): (N,) int64; the squared
    distance is expanded as ||z||^2 - 2 z.e + ||e||^2 (the ||z||^2 term does not matter)."""
    scores = codebook.square().sum(1) - 2.0 * z @ codebook.T  # (N, K)
    return scores.argmin(1)


def _d2_sample(weights: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """n row indices drawn with probability proportional to `weights` (N,) (D^2 sampling,
    Arthur & Vassilvitskii 2007), without replacement when n <= N; uniform if all are 0."""
    w = weights.double().clamp_min(0.0)
    w = w + (1e-12 * float(w.max()) if float(w.max()) > 0 else 1.0)  # every row possible
    return torch.multinomial(w, n, replacement=n > w.shape[0], generator=generator)


def kmeans(
    z: Tensor, k: int, iters: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on z (N, d) with k-means++ seeding (Arthur & Vassilvitskii 2007:
    each new centre drawn with probability proportional to the squared distance to the
    nearest chosen one); an empty cluster keeps its previous centroid. Returns (centroids
    (k, d), cluster sizes (k,))."""
    first = torch.randint(z.shape[0], (1,), generator=generator, device=z.device)
    centroids = z[first]  # (1, d)
    d2 = (z - centroids).square().sum(1)  # (N,)
    for _ in range(k - 1):
        pick = _d2_sample(d2, 1, generator)
        centroids = torch.cat([centroids, z[pick]])
        d2 = torch.minimum(d2, (z - z[pick]).square().sum(1))
    counts = torch.zeros(k, dtype=z.dtype, device=z.device)
    for _ in range(iters):
        assign = nearest_codes(z, centroids)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(z.dtype)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, z)  # (k, d)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


def ema_codebook_update(
    count: Tensor, total: Tensor, z: Tensor, codes: Tensor, decay: float, eps: float
) -> Tensor:
    """One EMA step of the codebook (van den Oord et al. 2017, appendix A.1, eq. 6-8), in
    place on the running cluster sizes `count` (K,) and sums `total` (K, d):

        N_k <- decay N_k + (1 - decay) n_k,   m_k <- decay m_k + (1 - decay) sum_{i: k_i = k} z_i,

    with n_k the number of the batch's vectors z (N, d) assigned to code k (`codes` (N,)).
    Returns the new codebook e_k = m_k / N~_k, where N~ is N with Laplace smoothing
    N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j (as in Sonnet's VQ-VAE-EMA), so a
    code that lost all its vectors does not divide by zero."""
    k = count.shape[0]
    n = torch.bincount(codes, minlength=k).to(count.dtype)  # (K,)
    sums = torch.zeros_like(total).index_add_(0, codes, z.to(total.dtype))  # (K, d)
    count.mul_(decay).add_(n, alpha=1.0 - decay)
    total.mul_(decay).add_(sums, alpha=1.0 - decay)
    mass = count.sum()
    smoothed = (count + eps) / (mass + k * eps) * mass  # (K,)
    return total / smoothed[:, None]


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantization of latents (B, `dim`, h, w) with K =
    `codebook_size` codes (see the module docstring for the references).

    `codebook_dim` < dim looks codes up in a learned linear projection of that width (1x1
    convolutions in and out); `cosine` l2-normalises latents and codes before the lookup.
    `ema_decay` > 0 updates the codebook by EMA (no codebook loss); 0 learns it by gradient
    with the codebook term. The auxiliary loss per example is the mean over positions and
    channels of beta ||z_e - sg(e)||^2 (plus ||sg(z_e) - e||^2 without EMA). `kmeans_iters`
    > 0 initialises the codebook by k-means on the first training batch; `dead_after` > 0
    restarts codes unused for that many training steps. `gradient` is "straight_through"
    or "rotation" (the rotation trick).

    Buffers: `ema_count` (K,), `ema_sum` (K, d) (EMA statistics), `idle` (K,) training
    steps since each code was last used, `initialized` (k-means done)."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        codebook_dim: int | None = None,
        cosine: bool = False,
        beta: float = 0.25,
        ema_decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_iters: int = 10,
        dead_after: int = 0,
        gradient: Gradient = "straight_through",
    ) -> None:
        super().__init__()
        if gradient not in ("straight_through", "rotation"):
            raise ValueError(f"gradient must be 'straight_through' or 'rotation', got {gradient!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.dim, self.codebook_size = dim, codebook_size
        self.codebook_dim = dim if codebook_dim is None else codebook_dim
        self.cosine, self.beta, self.ema_decay, self.eps = cosine, beta, ema_decay, eps
        self.kmeans_iters, self.dead_after, self.gradient = kmeans_iters, dead_after, gradient
        self.project_in = _projection(dim, self.codebook_dim)
        self.project_out = _projection(self.codebook_dim, dim)
        init = torch.randn(codebook_size, self.codebook_dim) / math.sqrt(self.codebook_dim)
        init = F.normalize(init, dim=1) if cosine else init
        if self.uses_ema:
            self.register_buffer("codebook", init)
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", init.clone())
        self.register_buffer("idle", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(kmeans_iters == 0))

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay > 0

    def _flat(self, z: Tensor) -> Tensor:
        """z (B, D, h, w) -> lookup vectors (B, h, w, d), normalised if cosine."""
        f = channels_last(self.project_in(z))
        return F.normalize(f, dim=-1) if self.cosine else f

    def _codebook(self) -> Tensor:
        return F.normalize(self.codebook, dim=1) if self.cosine else self.codebook

    def quantize(self, z: Tensor, step: int) -> Quantized:
        f = self._flat(z)  # (B, h, w, d)
        flat = f.reshape(-1, self.codebook_dim)  # (N, d)
        if self.training:
            self._maybe_init(flat.detach())
        with torch.no_grad():
            codes = nearest_codes(flat, self._codebook())  # (N,)
        e = F.embedding(codes, self._codebook()).view_as(f)  # (B, h, w, d)
        if self.training:
            self._update(flat.detach(), codes, (f - e).detach().flatten(0, 2).square().sum(1))
        per_position = self.beta * (f - e.detach()).square()  # commitment: encoder term
        if not self.uses_ema:
            per_position = per_position + (f.detach() - e).square()  # codebook term
        loss = per_position.flatten(1).mean(1)  # (B,)
        mix = rotation_trick if self.gradient == "rotation" else straight_through
        z_q = self.project_out(channels_first(mix(f, e)))  # (B, D, h, w)
        return Quantized(z_q, codes.view(f.shape[:-1]), loss)

    def lookup(self, z: Tensor) -> Tensor:
        f = self._flat(z)  # (B, h, w, d)
        return nearest_codes(f.reshape(-1, self.codebook_dim), self._codebook()).view(f.shape[:-1])

    def embed(self, codes: Tensor) -> Tensor:
        e = F.embedding(self.check_codes(codes), self._codebook())  # (B, h, w, d)
        return self.project_out(channels_first(e))

    @torch.no_grad()
    def _maybe_init(self, flat: Tensor) -> None:
        """k-means initialisation from the first training batch (once)."""
        if bool(self.initialized):
            return
        centroids, counts = kmeans(flat, self.codebook_size, self.kmeans_iters)
        if self.cosine:
            centroids = F.normalize(centroids, dim=1)
        self.codebook.data.copy_(centroids)
        self.ema_count.copy_(counts.clamp_min(1.0))
        self.ema_sum.copy_(centroids * self.ema_count[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: Tensor, codes: Tensor, error: Tensor) -> None:
        """After a training step's lookup of `flat` (N, d) to `codes` (N,) with squared
        quantization errors `error` (N,): EMA statistics, idle counters, restarts."""
        if self.uses_ema:
            new = ema_codebook_update(self.ema_count, self.ema_sum, flat, codes,
                                      self.ema_decay, self.eps)  # fmt: skip
            self.codebook.data.copy_(F.normalize(new, dim=1) if self.cosine else new)
        self.idle.add_(1)
        self.idle[codes] = 0
        if self.dead_after > 0:
            self.restart(flat, self.idle >= self.dead_after, error)

    @torch.no_grad()
    def restart(self, flat: Tensor, dead: Tensor, error: Tensor) -> None:
        """Reset the codes where `dead` (K,) is True to rows of `flat` (N, d) (the current
        batch's encoder outputs), drawn with the global generator with probability
        proportional to their squared quantization error `error` (N,) (D^2 sampling as in
        k-means++: a restarted code goes where the codebook serves the data worst, never
        onto a vector already quantized exactly); their EMA statistics restart as one
        vector each and their idle counters at 0."""
        index = dead.nonzero().squeeze(1)  # (n_dead,)
        if index.numel() == 0:
            return
        picks = flat[_d2_sample(error, index.numel(), None)]  # (n_dead, d)
        self.codebook.data[index] = picks
        self.ema_sum[index] = picks
        self.ema_count[index] = 1.0
        self.idle[index] = 0
