"""Medusa candidate trees: which of the heads' ranked tokens a verification pass scores.

A tree is a set of paths of ranks closed under prefixes, (0, 1) being head 1's best token
followed by head 2's second best; the verification pass of `genlab.tokens.medusa` feeds the
root and every node at once, each attending to its ancestors only (`Tree.mask`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Tree"]

# one depth of a tree as Python values: (parent inputs, [(node, row of its parent among
# them, rank, parent, whether it has children)], R)
Level = tuple[list[int], list[tuple[int, int, int, int, bool]], int]


@dataclass(frozen=True)
class Tree:
    """Candidate paths as tuples of ranks, one per depth: (0, 1) is head 1's best token
    followed by head 2's second best. Inputs of the verification pass are the root (the next
    token, chosen from the prior itself) then the nodes in `paths` order.

    depth (T,): 0 for the root; rank (T,); parent (T,): index of the parent input (root: 0);
    mask (T, T): ancestors and self; leaves (P, D + 1): each maximal path as input indices
    from the root, padded with -1. The decoding loop reads the same structure as Python
    values (`parents`, `leaf_paths`) and gathers the candidates by `slots` (T - 1,): index
    (depth - 1) R + rank into the heads' flattened top-R tokens (K, R), R = `max_rank()`;
    at a few microseconds per small tensor operation, these save a good part of a step."""

    paths: tuple[tuple[int, ...], ...]
    depth: Tensor
    rank: Tensor
    parent: Tensor
    mask: Tensor
    leaves: Tensor
    _truncated: dict[int, Tree] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def parents(self) -> tuple[int, ...]:
        return tuple(self.parent.tolist())

    @functools.cached_property
    def leaf_paths(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(i for i in row if i >= 0) for row in self.leaves.tolist())

    @functools.cached_property
    def levels(self) -> tuple[Level, ...]:
        """Per depth d = 1.., for heads that read the path (they run depth by depth): the
        distinct parents of the depth-d nodes (input indices), each node as (input index,
        row of its parent among those, rank, parent, whether it has children), and
        R = the largest rank + 1."""
        depth, rank, parent = self.depth.tolist(), self.rank.tolist(), self.parents
        has_children = set(parent[1:])
        out = []
        for d in range(1, self.max_depth + 1):
            nodes = [i for i in range(1, self.size) if depth[i] == d]
            parents = sorted({parent[i] for i in nodes})
            row = {p: r for r, p in enumerate(parents)}
            kids = [(i, row[parent[i]], rank[i], parent[i], i in has_children) for i in nodes]
            out.append((parents, kids, max(rank[i] for i in nodes) + 1))
        return tuple(out)

    @functools.cached_property
    def slots(self) -> Tensor:
        return (self.depth[1:] - 1) * self.max_rank() + self.rank[1:]

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> Tree:
        ordered = sorted({tuple(int(r) for r in p) for p in paths}, key=lambda p: (len(p), p))
        index = {(): 0} | {p: i + 1 for i, p in enumerate(ordered)}
        for p in ordered:
            if not p or min(p) < 0 or p[:-1] not in index:
                raise ValueError(f"tree path {p}: every path needs ranks >= 0 and its prefix")
        t = len(ordered) + 1
        parent = torch.tensor([0] + [index[p[:-1]] for p in ordered])
        mask = torch.eye(t, dtype=torch.bool)
        for i, p in enumerate(ordered, start=1):
            for j in range(len(p)):
                mask[i, index[p[:j]]] = True
        ends = [p for p in ordered if not any(q[:-1] == p for q in ordered)] or [()]
        depth = max(len(p) for p in ends)
        leaves = torch.full((len(ends), depth + 1), -1)
        for row, p in enumerate(ends):
            leaves[row, : len(p) + 1] = torch.tensor([index[p[:j]] for j in range(len(p) + 1)])
        return cls(
            tuple(ordered),
            torch.tensor([0] + [len(p) for p in ordered]),
            torch.tensor([0] + [p[-1] for p in ordered]),
            parent,
            mask,
            leaves,
        )

    @classmethod
    def full(cls, topk: Sequence[int]) -> Tree:
        """Every combination of head k's top-topk[k-1] tokens up to depth len(topk)."""
        ranks = [range(k) for k in topk]
        return cls.from_paths(
            [p for d in range(1, len(topk) + 1) for p in itertools.product(*ranks[:d])]
        )

    @classmethod
    def chain(cls, depth: int) -> Tree:
        """One path: each head's best token."""
        return cls.from_paths([(0,) * d for d in range(1, depth + 1)])

    @classmethod
    def sparse(cls, accuracy: Tensor, nodes: int) -> Tree:
        """The `nodes` paths of highest estimated acceptance, prod_k accuracy[k, rank_k], where
        accuracy[k, r] is how often head k+1's rank-r token is the right one (Cai et al.
        sec. 2.3.3). A path never scores above its prefix, so greedy selection keeps the tree
        closed under prefixes and maximises the expected accepted length sum(score)."""
        acc = accuracy.double().clamp(1e-9, 1.0)  # (K, R)
        chosen: list[tuple[int, ...]] = []
        frontier: dict[tuple[int, ...], float] = {
            (r,): float(acc[0, r]) for r in range(acc.shape[1])
        }
        while frontier and len(chosen) < nodes:
            best = max(frontier, key=lambda p: (frontier[p], [-r for r in p]))
            score = frontier.pop(best)
            chosen.append(best)
            if len(best) < acc.shape[0]:
                for r in range(acc.shape[1]):
                    frontier[(*best, r)] = score * float(acc[len(best), r])
        return cls.from_paths(chosen)

    @property
    def size(self) -> int:
        """Inputs of a verification pass: the root and the nodes."""
        return self.depth.shape[0]

    @property
    def max_depth(self) -> int:
        return self.leaves.shape[1] - 1

    def max_rank(self) -> int:
        return int(self.rank.max()) + 1

    def truncated(self, depth: int) -> Tree:
        """The paths no deeper than `depth` (the last tokens of a sequence); built once."""
        if depth >= self.max_depth:
            return self
        if depth not in self._truncated:
            self._truncated[depth] = Tree.from_paths([p for p in self.paths if len(p) <= depth])
        return self._truncated[depth]
