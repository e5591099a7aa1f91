"""The two-stage model: a frozen tokenizer and a Transformer prior over its codes, with
optional Medusa heads.

With a deterministic encoder z(x) and a decoder that is a probability of the discrete
pixels, the pixels' probability P(x) = sum_z p(x | z) p(z) is bounded by one term:

    ln P(x) >= ln p(x | z(x)) + ln p_prior(z(x))

(van den Oord et al. 2017, sec. 3.2 report the same two-stage quantity for VQ-VAE + PixelCNN;
Razavi et al. 2019, "VQ-VAE-2", sec. 4). `log_prob` returns this bound in nats, so the model
sits in the cross-family likelihood table with bits/dim of the pixels (`discrete = True`).
A class-conditional prior scored without labels mixes its classes uniformly:
ln p(z) = logsumexp_y ln p(z | y) - ln C, an exact likelihood of the mixture.

Training (`loss`) is maximum likelihood of the codes, -ln p(z(x) | y), plus the Medusa head
losses: Medusa-2 trains prior and heads jointly with head k weighted `head_weight *
head_decay**k`; Medusa-1 (`freeze_prior`) trains the heads alone on a frozen prior
(Cai et al. 2024, sec. 2.2). Head targets (`head_targets`) are the data's codes ("data"),
the prior's predictive distribution along them ("prior"), or, for a frozen prior, the
prior's own continuations of data prefixes ("greedy" or "sampled": self-distillation,
Cai et al. sec. 2.3.2), which match what greedy decoding or sampling will verify.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError, DataError
from genlab.nets.layers import drop_labels
from genlab.protocol import GenerativeModel
from genlab.tokens.medusa import MedusaHeads, Tree, medusa_decode
from genlab.tokens.protocol import Tokenizer
from genlab.tokens.sampling import DecodeStats, TokenSampling, plain_decode
from genlab.tokens.speculative import speculative_decode
from genlab.tokens.transformer import PriorTransformer, TransformerConfig

__all__ = ["DECODERS", "Decoding", "TokenPrior", "head_hits"]

Decode = Literal["plain", "medusa", "speculative"]
DECODERS: tuple[str, ...] = get_args(Decode)
HeadTargets = Literal["data", "prior", "greedy", "sampled"]
SELF_DISTILLED = ("greedy", "sampled")  # targets from the prior's own continuations
RANKS = 10  # ranks of the running head accuracy that sparse trees are built from
ACCURACY_MOMENTUM = 0.99


@dataclass(frozen=True)
class Decoding:
    """How `TokenPrior.sample` decodes. `decode`: "plain" (batched, one cached forward pass
    per token), "medusa" (greedy when `sampling.temperature` is 0, else typical acceptance
    with (epsilon, delta) = `typical`, over `tree`, by default the sparse tree of
    `tree_nodes` candidates (default: the model's) from the running head accuracies) or
    "speculative" (exact speculative sampling with a chain of the first `draft` heads,
    default all). Medusa and speculative decoding run one sequence at a time (batch 1, the
    latency setting they are made for). `guidance`: classifier-free guidance scale of plain
    decoding."""

    decode: Decode = "plain"
    sampling: TokenSampling = TokenSampling()
    guidance: float | None = None
    tree: Tree | None = None
    tree_nodes: int | None = None
    draft: int | None = None
    typical: tuple[float, float] = (0.09, 0.3)

    def __str__(self) -> str:
        s = self.sampling
        how = "greedy" if s.greedy else f"T={s.temperature:g}"
        how += "" if s.top_k is None else f", top-k {s.top_k}"
        how += "" if s.top_p is None else f", top-p {s.top_p:g}"
        return f"{self.decode} ({how})"


class TokenPrior(GenerativeModel):
    """A frozen `tokenizer` (a module satisfying `genlab.tokens.protocol.Tokenizer`) and a
    `PriorTransformer` of `cfg` over its codes; `medusa_heads` > 0 adds Medusa heads of
    `head_layers` residual blocks each, reading the root token when `head_root` and the
    candidate path before them too when `head_path` (Hydra-style).

    `ready` says whether the tokenizer holds trained weights: a model rebuilt from a config
    alone gets them from its run's checkpoint, and refuses to work until then."""

    discrete = True

    def __init__(
        self,
        tokenizer: nn.Module,
        cfg: TransformerConfig,
        *,
        medusa_heads: int = 0,
        head_layers: int = 1,
        head_root: bool = False,
        head_path: bool = False,
        head_weight: float = 1.0,
        head_decay: float = 0.8,
        head_targets: HeadTargets = "data",
        freeze_prior: bool = False,
        label_dropout: float = 0.0,
        tree_nodes: int = 32,
        ready: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, Tokenizer):
            raise ConfigError(
                f"{type(tokenizer).__name__} is not a tokenizer (needs "
                "codebook_size, grid, encode, decode, decoder_log_prob)"
            )
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.net = PriorTransformer(cfg)
        self.heads = (
            MedusaHeads(medusa_heads, cfg.dim, cfg.vocab, head_layers, head_root, head_path)
            if medusa_heads
            else None
        )
        if self.heads is not None:
            self.heads.copy_projection(self.net.head.weight)
        self.head_weight, self.head_decay, self.head_targets = head_weight, head_decay, head_targets
        self.freeze_prior, self.label_dropout = freeze_prior, label_dropout
        self.tree_nodes = tree_nodes
        self._trees: dict[tuple[int, int], Tree] = {}
        if freeze_prior:
            self.net.requires_grad_(False)
        self.register_buffer("ready", torch.tensor(ready))
        ranks = min(RANKS, cfg.vocab)
        self.register_buffer("head_accuracy", torch.zeros(max(medusa_heads, 1), ranks))
        self.register_buffer("accuracy_updates", torch.tensor(0))

    @property
    def cfg(self) -> TransformerConfig:
        return self.net.cfg

    def train(self, mode: bool = True) -> TokenPrior:
        super().train(mode)
        self.tokenizer.eval()  # frozen: always in inference mode
        if self.freeze_prior:
            self.net.eval()
        return self

    def _check_ready(self) -> None:
        if not bool(self.ready):
            raise DataError(
                "the tokenizer of this prior holds no trained weights: build the "
                "model through its run (genlab.runs.load_run / train_run)"
            )

    # ------------------------------------------------------------------------- codes

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> raster-ordered codes (B, L)."""
        self._check_ready()
        return self.tokenizer.encode(x).flatten(1)  # type: ignore[operator]

    def code_log_prob(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        """ln p(z | y) (B,) of code sequences (B, L); without labels, a class-conditional
        prior's uniform mixture over its classes (module docstring)."""
        c = self.cfg.num_classes
        if labels is not None or c == 0:
            logits = self.net.logits(self.net.teacher_forced(codes, labels))  # (B, L, K)
            return -F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(1)
        per_class = [self.code_log_prob(codes, torch.full_like(codes[:, 0], y)) for y in range(c)]
        return torch.logsumexp(torch.stack(per_class, 1), 1) - math.log(c)  # (B,)

    def bits_per_token(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """-log2 p(z(x) | y) / L per example (B,)."""
        return -self.code_log_prob(self.encode(x), cond) / (self.cfg.length * math.log(2))

    # ------------------------------------------------------------------------- protocol

    def log_prob(
        self, x: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """The two-stage bound ln p(x | z(x)) + ln p(z(x) | y) <= ln P(x | y), nats (B,)."""
        codes = self.encode(x)  # (B, L)
        grid = codes.view(-1, *self.tokenizer.grid)  # type: ignore[attr-defined]
        return self.tokenizer.decoder_log_prob(x, grid) + self.code_log_prob(codes, cond)  # type: ignore[operator]

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """-ln p(z(x) | y) (unless the prior is frozen) plus the weighted head losses, (B,)."""
        codes = self.encode(x)  # (B, L)
        labels = self._drop_labels(cond)
        start = 0  # the first position whose code is a target of the heads
        if self.head_targets in SELF_DISTILLED:
            codes, start = self._continuations(codes, labels)
        hidden = self.net.teacher_forced(codes, labels)  # (B, L, D)
        logits = self.net.logits(hidden)  # (B, L, K)
        loss = torch.zeros(codes.shape[0], device=codes.device)
        if not self.freeze_prior:
            loss = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(1)
        if self.heads is not None:
            loss = loss + self._head_loss(hidden, logits.detach(), codes, start)
        return loss

    def _drop_labels(self, cond: Tensor | None) -> Tensor | None:
        """Labels with each replaced by the null class with probability label_dropout."""
        if cond is None or self.label_dropout == 0 or not self.training:
            return cond
        return drop_labels(cond, self.label_dropout, self.cfg.num_classes)

    def _continuations(self, codes: Tensor, labels: Tensor | None) -> tuple[Tensor, int]:
        """Self-distillation data for the heads of a frozen prior (Cai et al. 2024, sec.
        2.3.2): the first P codes of each sequence (B, L), P uniform in 0..L-1 (one per batch),
        continued by the prior itself, greedily or by sampling at temperature 1, and P (the
        heads learn the continuation only). Greedy continuations are a function of the
        prefix, which heads can learn to predict."""
        assert self.freeze_prior, "self-distilled head targets need a frozen prior"
        p = int(torch.randint(self.cfg.length, ()))
        how = TokenSampling(0.0 if self.head_targets == "greedy" else 1.0)
        seq, _ = plain_decode(self.net, codes.shape[0], labels, prefix=codes[:, :p] if p else None,
                              sampling=how)  # fmt: skip
        return seq, p

    def _head_loss(self, hidden: Tensor, logits: Tensor, codes: Tensor, start: int) -> Tensor:
        """sum_k head_weight decay^k CE(head k at i, target at i + k) over targets at
        positions >= start, per example (B,)."""
        assert self.heads is not None
        out = self.heads(hidden, codes)  # (B, L, K, V); row i's root is z_i
        total = hidden.new_zeros(codes.shape[0])
        for k in range(1, min(self.heads.n_heads, codes.shape[1] - 1) + 1):
            first = max(start - k, 0)  # head k at i predicts position i + k >= start
            pred = out[:, first:-k, k - 1]  # (B, L - k - first, V)
            if self.head_targets == "prior":
                target = torch.softmax(logits[:, first + k :], -1)  # (B, L - k - first, V)
                ce = -(target * torch.log_softmax(pred, -1)).sum(-1)
            else:
                target = codes[:, first + k :]  # (B, L - k - first)
                ce = F.cross_entropy(pred.transpose(1, 2), target, reduction="none")
            total = total + self.head_weight * self.head_decay**k * ce.sum(1)
            if self.training:
                best = logits[:, first + k :].argmax(-1)  # the prior's argmax there
                hits = head_hits(pred.detach(), best, self.head_accuracy.shape[1])
                self._track_accuracy(k, hits)
        self.accuracy_updates += int(self.training)
        return total

    @torch.no_grad()
    def _track_accuracy(self, k: int, hits: Tensor) -> None:
        """Running rate (R,) at which head k's rank-r token is the prior's argmax (the tree's
        acceptance estimate): a running mean over the first steps, then an exponential one."""
        w = max(1.0 - ACCURACY_MOMENTUM, 1.0 / (int(self.accuracy_updates) + 1))
        self.head_accuracy[k - 1].lerp_(hits.to(self.head_accuracy), w)

    # ------------------------------------------------------------------------- sampling

    def default_tree(self, nodes: int) -> Tree:
        """The sparse tree of `nodes` candidates from the running head accuracies (a chain of
        the heads' best tokens before any were measured)."""
        assert self.heads is not None
        key = (nodes, int(self.accuracy_updates))
        if key not in self._trees:  # the accuracies change only while training
            updated = key[1] > 0
            tree = (
                Tree.sparse(self.head_accuracy, nodes)
                if updated
                else Tree.chain(self.heads.n_heads)
            )
            self._trees = {key: tree}
        return self._trees[key]

    @torch.no_grad()
    def sample_codes(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        decoding: Decoding = Decoding(),
        prefix: Tensor | None = None,
    ) -> tuple[Tensor, DecodeStats]:
        """n code sequences (n, L) and what decoding them cost (see `Decoding`); with
        `prefix` (n, P) every sequence starts with the given codes (a completion)."""
        self._check_ready()
        d = decoding
        if d.decode == "plain":
            return plain_decode(
                self.net,
                n,
                cond,
                prefix=prefix,
                sampling=d.sampling,
                guidance=d.guidance,
                generator=generator,
            )
        if self.heads is None:
            raise ConfigError(f"decode: {d.decode!r} needs Medusa heads (token-prior.medusa_heads)")
        if d.guidance is not None:
            raise ConfigError(f"guidance: only with plain decoding (got decode = {d.decode!r})")
        tree = d.tree if d.tree is not None else self.default_tree(d.tree_nodes or self.tree_nodes)
        stats, rows = DecodeStats(), []
        for i in range(n):
            label = None if cond is None else cond[i]
            first = None if prefix is None else prefix[i]
            if d.decode == "medusa":
                z, s = medusa_decode(
                    self.net,
                    self.heads,
                    tree,
                    label,
                    prefix=first,
                    sampling=d.sampling,
                    typical=d.typical,
                    generator=generator,
                )
            else:
                z, s = speculative_decode(
                    self.net,
                    self.heads,
                    label,
                    prefix=first,
                    draft=d.draft,
                    sampling=d.sampling,
                    generator=generator,
                )
            rows.append(z)
            stats.add(s)
        return torch.stack(rows), stats

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        decoding: Decoding = Decoding(),
    ) -> Tensor:
        """n images (n, C, H, W): codes of `sample_codes` through the tokenizer's decoder
        (its mean)."""
        codes, _ = self.sample_codes(n, cond, generator=generator, decoding=decoding)
        return self.tokenizer.decode(codes.view(n, *self.tokenizer.grid))  # type: ignore[operator,attr-defined]


def head_hits(pred: Tensor, target: Tensor, ranks: int) -> Tensor:
    """How often the rank-r prediction of logits pred (..., V) is target (...): (ranks,)."""
    top = torch.topk(pred, ranks, dim=-1).indices  # (..., R)
    return (top == target.unsqueeze(-1)).flatten(0, -2).float().mean(0)
