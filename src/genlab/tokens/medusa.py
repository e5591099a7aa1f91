"""Medusa: extra decoding heads and tree verification (Cai et al. 2024, "Medusa: Simple LLM
Inference Acceleration Framework with Multiple Decoding Heads").

Head k (k = 1..K) reads the prior's last hidden state h_t and predicts the token k + 1 ahead
(the prior itself predicts the next one, head k the one after k more):

    p_t^(k) = softmax(W2^(k) (SiLU(W1^(k) h_t + b1^(k)) + h_t))               (Cai et al. eq. 1)

W1 starts at zero, so each head starts as the prior's own projection applied to h_t (W2
starts as a copy of it); `layers` > 1 stacks more such residual blocks. Optionally (`root`)
the heads read h_t + E[z_{t+1}], E a learned embedding (zero at first) of the token chosen at
t, the root of the tree: it is known before the heads run (the prior's own choice there),
and knowing it spares each head guessing what the prior chose, in the spirit of Hydra's
sequentially dependent heads (Ankner et al. 2024, "Hydra: Sequentially-Dependent Draft
Heads for Medusa Decoding"). With `path` they go the rest of Hydra's way: head k also reads
the tokens of the candidate path before it,

    x^(k) = h_t + E[z_{t+1}] + sum_{j<k} E_j[z_{t+1+j}],

E_j a learned (zero at first) embedding of the token j deep in the tree, so head k's guess is
conditioned on the guesses it would follow. Training feeds the target sequence (teacher
forcing); decoding drafts the tree depth by depth, each head on the nodes that have
children at the next depth (`Tree.levels`).

Decoding: each head proposes its top-k tokens; the candidates form a tree (`Tree`) whose
nodes the prior scores in ONE forward pass, each node attending to the cached prefix and to
its own ancestors only (tree attention, Cai et al. sec. 2.1.2); the longest accepted path is
kept, its keys and values moved into place in the cache.

- greedy: a node is accepted when it is the prior's argmax after its parent, so the output
  equals plain greedy decoding token for token;
- typical acceptance (Cai et al. sec. 2.3.1): a node x is accepted when
  p(x) > min(epsilon, delta exp(-H(p))) under the prior's (tempered) distribution p after its
  parent; fast, but not distribution-exact (`genlab.tokens.speculative` is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.tokens.sampling import DecodeStats, TokenSampling
from genlab.tokens.transformer import KVCache, PriorTransformer
from genlab.tokens.tree import Tree

__all__ = ["MedusaHeads", "Tree", "medusa_decode", "start_decoding"]


class MedusaHeads(nn.Module):
    """K heads over hidden states (..., D) -> logits (..., K, V) (module docstring, eq. 1),
    each with `layers` residual blocks x <- x + SiLU(W x + b) before its projection (Medusa
    uses one; more give a head more capacity at D^2 multiply-adds each per token). Blocks
    and projections of all heads are stacked, so each is one batched product."""

    def __init__(
        self,
        n_heads: int,
        dim: int,
        vocab: int,
        layers: int = 1,
        root: bool = False,
        path: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"a Medusa head has at least one residual block (got {layers})")
        self.n_heads, self.layers = n_heads, layers
        # root: the heads also read the token chosen at their position; path: and those of
        # the candidate path before them (module docstring). A path includes its root.
        self.root_embed = nn.Embedding(vocab, dim) if root or path else None
        if self.root_embed is not None:
            nn.init.zeros_(self.root_embed.weight)
        self.path_embed: nn.Parameter | None = None
        if path:  # E_j, j = 1..K-1: the token j deep on the path (zero-initialised)
            self.path_embed = nn.Parameter(torch.zeros(max(n_heads - 1, 1), vocab, dim))
        self.res_weight = nn.Parameter(torch.zeros(n_heads, dim, dim))  # W1, zero-initialised
        self.res_bias = nn.Parameter(torch.zeros(n_heads, dim))
        if layers > 1:  # the further blocks, also zero-initialised
            self.more_weight = nn.Parameter(torch.zeros(layers - 1, n_heads, dim, dim))
            self.more_bias = nn.Parameter(torch.zeros(layers - 1, n_heads, dim))
        self.proj = nn.Parameter(torch.zeros(n_heads, vocab, dim))  # W2
        nn.init.normal_(self.proj, std=0.02)

    @torch.no_grad()
    def copy_projection(self, weight: Tensor) -> None:
        """Start every head's W2 as the prior's output projection (V, D) (Cai et al. sec. 2.2.1)."""
        self.proj.copy_(weight.expand_as(self.proj))

    def forward(
        self, hidden: Tensor, root: Tensor | int | None = None, count: int | None = None
    ) -> Tensor:
        """Logits (..., K, V) from hidden states (..., D) and, for heads that read it, the
        root token (...,) chosen at each (ignored by heads that do not). `count`: only the
        first `count` heads (a tree `count` deep needs no more), (..., count, V)."""
        if self.root_embed is not None:
            if root is None:
                raise ValueError("these Medusa heads read the root token: pass root")
            w = self.root_embed.weight
            hidden = hidden + (w[root] if isinstance(root, int) else F.embedding(root, w))
        k = self.n_heads if count is None else count
        if not 1 <= k <= self.n_heads:
            raise ValueError(f"count must be 1..{self.n_heads}, got {count}")
        if self.path_embed is not None:
            if not isinstance(root, Tensor) or root.shape != hidden.shape[:-1]:
                raise ValueError(
                    "heads that read the path take the token sequence as root, shaped like "
                    "hidden without its last dim (decoding drafts with `draft_tree`)"
                )
            xin = self._path_inputs(hidden, root, k)  # (..., k, D)
            r = torch.einsum("...kd,ked->...ke", xin, self.res_weight[:k])
        else:
            if hidden.dim() == 1:
                return self._one(hidden, k)
            xin = hidden.unsqueeze(-2)  # (..., 1, D): every head reads the same input
            r = torch.einsum("...d,ked->...ke", hidden, self.res_weight[:k])
        x = F.silu(r + self.res_bias[:k]) + xin  # (..., k, D)
        for i in range(self.layers - 1):
            w, b = self.more_weight[i, :k], self.more_bias[i, :k]
            x = F.silu(torch.einsum("...kd,ked->...ke", x, w) + b) + x
        return torch.einsum("...kd,kvd->...kv", x, self.proj[:k])  # (..., k, V)

    def _path_inputs(self, hidden: Tensor, codes: Tensor, k: int) -> Tensor:
        """Teacher-forced inputs (..., k, D) of heads 1..k at every row i of a sequence:
        hidden (..., L, D) (the root embedding added), plus E_j of codes z_{i+j}, j < head
        (token 0 past the end of the sequence, where no head has a target)."""
        assert self.path_embed is not None
        rows, total = [hidden], hidden
        for j in range(1, k):
            ahead = F.pad(codes[..., j:], (0, j))  # (..., L): z_{i+j}
            total = total + F.embedding(ahead, self.path_embed[j - 1])
            rows.append(total)
        return torch.stack(rows, -2)

    def head(self, k: int, x: Tensor) -> Tensor:
        """Head k's (1-based) logits (..., V) from its inputs x (..., D)."""
        x = F.silu(F.linear(x, self.res_weight[k - 1], self.res_bias[k - 1])) + x
        for i in range(self.layers - 1):
            x = F.silu(F.linear(x, self.more_weight[i, k - 1], self.more_bias[i, k - 1])) + x
        return F.linear(x, self.proj[k - 1])

    def draft_tree(self, hidden: Tensor, root: int, tree: Tree) -> Tensor:
        """The verification inputs (T,) of `tree` after one hidden state (D,): the root, then
        each node's token, the rank-r token of its head (`drafter` for many calls)."""
        return self.drafter()(hidden, root, tree)

    def drafter(self) -> Callable[[Tensor, int, Tree], Tensor]:
        """`draft_tree` with the weights' per-head views taken once (a decoding loop calls
        it at every step, where each view costs a microsecond or two). Heads that read the
        path run depth by depth on the nodes with children (`Tree.levels`), one head call
        per depth and the rest on Python values; the others all at once."""
        if self.path_embed is None:

            def all_at_once(hidden: Tensor, root: int, tree: Tree) -> Tensor:
                top = torch.topk(self(hidden, root, tree.max_depth), tree.max_rank(), dim=-1)
                return torch.cat([torch.tensor([root]), top.indices.view(-1)[tree.slots]])

            return all_at_once
        assert self.root_embed is not None
        root_rows, paths = self.root_embed.weight, list(self.path_embed.unbind(0))
        blocks = [
            [(self.res_weight[k], self.res_bias[k])]
            + [(self.more_weight[i, k], self.more_bias[i, k]) for i in range(self.layers - 1)]
            for k in range(self.n_heads)
        ]
        projections = list(self.proj.unbind(0))

        def depth_by_depth(hidden: Tensor, root: int, tree: Tree) -> Tensor:
            tokens = [root] * tree.size
            inputs = {0: hidden + root_rows[root]}  # node -> its children's head input (D,)
            for d, (parents, children, width) in enumerate(tree.levels, start=1):
                if len(parents) == 1:  # one state (most depths): mat-vecs on cached views
                    x = inputs[parents[0]]
                    for w, b in blocks[d - 1]:
                        x = F.silu(torch.addmv(b, w, x)) + x
                    top = [torch.topk(torch.mv(projections[d - 1], x), width).indices.tolist()]
                else:
                    x = torch.stack([inputs[p] for p in parents])  # (P, D)
                    top = torch.topk(self.head(d, x), width).indices.tolist()
                for node, row, rank, parent, grows in children:
                    tokens[node] = token = top[row][rank]
                    if grows:  # its children's head reads its token too
                        inputs[node] = inputs[parent] + paths[d - 1][token]
            return torch.tensor(tokens)

        return depth_by_depth

    def _one(self, hidden: Tensor, k: int) -> Tensor:
        """The decoding case, one hidden state (D,) -> (k, V): a mat-vec for every head's
        first block, then batched row-vector products (k, 1, D) @ (k, D, E), a few
        microseconds each where an einsum, or a batched mat-vec, costs several times that."""
        d = hidden.shape[0]
        r = torch.addmv(self.res_bias[:k].reshape(-1), self.res_weight[:k].view(k * d, d), hidden)
        x = (F.silu(r).view(k, d) + hidden).unsqueeze(1)  # (k, 1, D)
        for i in range(self.layers - 1):
            b, w = self.more_bias[i, :k].unsqueeze(1), self.more_weight[i, :k].transpose(1, 2)
            x = F.silu(torch.baddbmm(b, x, w)) + x
        return torch.bmm(x, self.proj[:k].transpose(1, 2)).squeeze(1)  # (k, V)


@dataclass
class DecodeState:
    """A decoder between verification passes: the cache, the prior's logits (V,) and the
    hidden state (D,) at the last accepted input, and the codes so far."""

    cache: KVCache
    logits: Tensor
    hidden: Tensor
    codes: list[int]
    stats: DecodeStats


def start_decoding(
    net: PriorTransformer, label: Tensor | None, prefix: Tensor | None, extra: int
) -> DecodeState:
    """Forward the start token of one sequence (label: () or None) and its first codes
    `prefix` (P,) into a cache with room for the whole sequence and `extra` candidates."""
    cache, hidden = net.prefill(
        None if label is None else label.view(1),
        None if prefix is None else prefix.view(1, -1),
        1,
        net.cfg.length + extra,
    )
    h = hidden[0]  # (D,)
    codes = [] if prefix is None else prefix.tolist()
    return DecodeState(cache, net.logits(h), h, codes, DecodeStats(forwards=1))


def verify(
    net: PriorTransformer, state: DecodeState, tokens: Tensor, depth: Tensor, tree_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """One forward pass of candidate inputs (T,) at depths (T,) with boolean attention mask
    (T, T) among them, after the cache -> (hidden (T, D), logits (T, V)); the cache holds them
    until `keep`."""
    n = state.cache.length
    mask = state.hidden.new_zeros(tokens.shape[0], n + tokens.shape[0])  # additive: 0 or -inf
    mask[:, n:].masked_fill_(~tree_mask, -torch.inf)  # converted once, not in every layer
    # a candidate for the last code sits one past the last input position: it is verified by
    # its parent's output, and its own output and keys are never used
    positions = (n + depth).clamp(max=net.cfg.length - 1)  # (T,)
    hidden = net(tokens[None], positions, cache=state.cache, mask=mask)[0]  # (T, D)
    state.stats.forwards += 1
    return hidden, net.logits(hidden)


def accept_longest(ok: Sequence[bool], leaf_paths: Sequence[Sequence[int]]) -> list[int]:
    """Input indices of the longest accepted path, root first (the first of the longest):
    ok[i] says whether input i is accepted given its parent (the root always is);
    `leaf_paths` are the tree's maximal paths (`Tree.leaf_paths`)."""
    best: list[int] = []
    for path in leaf_paths:
        n = 0
        while n < len(path) and ok[path[n]]:
            n += 1
        if n > len(best):
            best = list(path[:n])
    return best


def typical_ok(probs: Tensor, tokens: Tensor, parent: Tensor, eps: float, delta: float) -> Tensor:
    """Typical acceptance of each input given the prior's distribution probs (T, V) at every
    input: p_parent(x) > min(eps, delta exp(-H(p_parent))) (Cai et al. sec. 2.3.1)."""
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)  # (T,)
    threshold = torch.clamp(delta * torch.exp(-entropy), max=eps)  # (T,)
    p = probs[parent, tokens]  # (T,)
    ok = p > threshold[parent]
    ok[0] = True
    return ok


@torch.no_grad()
def medusa_decode(
    net: PriorTransformer,
    heads: MedusaHeads,
    tree: Tree,
    label: Tensor | None = None,
    *,
    prefix: Tensor | None = None,
    sampling: TokenSampling = TokenSampling(0.0),
    typical: tuple[float, float] = (0.09, 0.3),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, DecodeStats]:
    """One code sequence (L,) that starts with `prefix` (P,) if given, by Medusa: greedy
    when `sampling.greedy` (identical to plain greedy decoding), else typical acceptance
    with (epsilon, delta) = `typical` and the root sampled from the prior's filtered
    distribution."""
    if tree.max_depth > heads.n_heads:
        raise ValueError(f"the tree is {tree.max_depth} deep; the model has {heads.n_heads} heads")
    length = net.cfg.length
    state = start_decoding(net, label, prefix, tree.size)
    draft = heads.drafter()
    root = int(sampling.choose(state.logits, generator))
    while len(state.codes) < length:
        state.codes.append(root)
        left = length - len(state.codes)
        if left == 0:
            break
        t = tree.truncated(left)
        tokens = draft(state.hidden, root, t)  # (T,)
        hidden, logits = verify(net, state, tokens, t.depth, t.mask)  # (T, D), (T, V)
        ids = tokens.tolist()
        if sampling.greedy:
            best = logits.argmax(-1).tolist()  # (T,): each input's successor
            ok = [True] + [ids[i] == best[p] for i, p in enumerate(t.parents) if i]
        else:
            ok = typical_ok(sampling.probs(logits), tokens, t.parent, *typical).tolist()
        path = accept_longest(ok, t.leaf_paths)  # (A,) input indices
        state.cache.keep(path)
        state.codes += [ids[i] for i in path[1:]]
        state.stats.accepted.append(len(path))
        state.hidden, state.logits = hidden[path[-1]], logits[path[-1]]
        # the next root: the prior's argmax there (greedy), else a draw from it
        root = best[path[-1]] if sampling.greedy else int(sampling.choose(state.logits, generator))
    state.stats.tokens = length - (0 if prefix is None else prefix.shape[0])
    return torch.tensor(state.codes), state.stats
