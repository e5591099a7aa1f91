"""Medusa: trees of candidates built by hand, the longest accepted path, typical acceptance,
heads that start as the prior's own projection, and greedy Medusa decoding that equals plain
greedy decoding token for token."""

from __future__ import annotations

import itertools

import pytest
import torch
from tokens.tiny import tiny_heads, tiny_net

from genlab.tokens.medusa import MedusaHeads, Tree, accept_longest, medusa_decode, typical_ok
from genlab.tokens.sampling import TokenSampling, plain_decode


def test_tree_from_paths_by_hand() -> None:
    tree = Tree.from_paths([(1, 0), (0,), (0, 1), (1,), (0, 0)])
    assert tree.paths == ((0,), (1,), (0, 0), (0, 1), (1, 0))  # inputs 1..5 after the root
    assert tree.depth.tolist() == [0, 1, 1, 2, 2, 2]
    assert tree.rank.tolist() == [0, 0, 1, 0, 1, 0]
    assert tree.parent.tolist() == [0, 0, 0, 1, 1, 2]
    assert tree.leaves.tolist() == [[0, 1, 3], [0, 1, 4], [0, 2, 5]]
    expected = torch.eye(6, dtype=torch.bool)
    for child, ancestors in {1: [0], 2: [0], 3: [0, 1], 4: [0, 1], 5: [0, 2]}.items():
        expected[child, ancestors] = True
    assert torch.equal(tree.mask, expected)
    assert tree.size == 6 and tree.max_depth == 2 and tree.max_rank() == 2
    assert tree.truncated(1).paths == ((0,), (1,))
    with pytest.raises(ValueError, match="prefix"):
        Tree.from_paths([(0, 0)])


def test_full_and_chain_trees() -> None:
    assert Tree.full((2, 1)).paths == ((0,), (1,), (0, 0), (1, 0))
    assert Tree.full((3, 2, 2)).size == 1 + 3 + 6 + 12
    assert Tree.chain(3).paths == ((0,), (0, 0), (0, 0, 0))


def _closed_trees(candidates: list[tuple[int, ...]], size: int):
    for subset in itertools.combinations(candidates, size):
        if all(p[:-1] in subset or len(p) == 1 for p in subset):
            yield subset


def test_sparse_tree_maximises_the_expected_accepted_length() -> None:
    acc = torch.tensor([[0.6, 0.25, 0.1], [0.5, 0.2, 0.1]])
    tree = Tree.sparse(acc, 3)
    assert tree.paths == ((0,), (1,), (0, 0))  # scores 0.6, 0.25 and 0.6 * 0.5 = 0.3

    def score(p: tuple[int, ...]) -> float:
        return float(torch.prod(torch.stack([acc[d, r] for d, r in enumerate(p)])))

    candidates = [p for d in (1, 2) for p in itertools.product(range(3), repeat=d)]
    for size in range(1, 8):  # brute force over every prefix-closed tree of that size
        best = max(sum(map(score, t)) for t in _closed_trees(candidates, size))
        assert sum(map(score, Tree.sparse(acc, size).paths)) == pytest.approx(best, abs=1e-12)


def test_longest_accepted_path() -> None:
    tree = Tree.from_paths([(0,), (1,), (0, 0), (0, 1), (1, 0)])
    assert tree.leaf_paths == ((0, 1, 3), (0, 1, 4), (0, 2, 5))
    assert tree.parents == (0, 0, 0, 1, 1, 2)
    ok = [True, True, True, False, True, True]
    assert accept_longest(ok, tree.leaf_paths) == [0, 1, 4]  # the first of the longest
    ok = [True, False, True, True, True, False]
    assert accept_longest(ok, tree.leaf_paths) == [0, 2]  # a child of a rejected node
    ok = [True, False, False, True, True, True]
    assert accept_longest(ok, tree.leaf_paths) == [0]
    # the candidates' slots in the heads' flattened top-R tokens (K, R), R = 2
    assert tree.slots.tolist() == [0, 1, 2, 3, 2]


def test_typical_acceptance_threshold_by_hand() -> None:
    # inputs: root, then two children; the root's distribution has entropy H
    probs = torch.tensor([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    h = -(probs[0] * probs[0].log()).sum()
    tokens, parent = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0])
    # threshold min(eps, delta e^-H) = min(0.15, 0.3 * e^-0.8018) = 0.1346
    assert 0.3 * torch.exp(-h) == pytest.approx(0.13456, abs=1e-4)
    assert typical_ok(probs, tokens, parent, 0.15, 0.3).tolist() == [True, True, False]
    assert typical_ok(probs, tokens, parent, 0.05, 0.3).tolist() == [True, True, True]


@pytest.mark.parametrize("layers", [1, 3])
def test_heads_start_as_the_prior_projection(layers: int) -> None:
    net = tiny_net()
    heads = MedusaHeads(3, net.cfg.dim, net.cfg.vocab, layers).double()
    heads.copy_projection(net.head.weight)
    h = torch.randn(4, 7, net.cfg.dim, dtype=torch.float64)
    out = heads(h)  # (4, 7, 3, K): zero residual blocks, so every head is the projection
    assert out.shape == (4, 7, 3, net.cfg.vocab)
    for k in range(3):
        assert torch.allclose(out[..., k, :], net.logits(h), atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_heads_by_hand_and_the_decoding_fast_path(layers: int) -> None:
    """Each head is its own stack of residual blocks and projection, and the one-state path
    of decoding (a mat-vec) equals the batched one."""
    torch.manual_seed(0)
    heads = MedusaHeads(3, 6, 5, layers).double()
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_()
    h = torch.randn(4, 6, dtype=torch.float64)
    out = heads(h)  # (4, 3, 5)
    for k in range(3):
        x = h + torch.nn.functional.silu(h @ heads.res_weight[k].T + heads.res_bias[k])
        for i in range(layers - 1):
            w, b = heads.more_weight[i, k], heads.more_bias[i, k]
            x = x + torch.nn.functional.silu(x @ w.T + b)
        assert torch.allclose(out[:, k], x @ heads.proj[k].T, atol=1e-10)
    for row in range(4):
        assert torch.allclose(heads(h[row]), out[row], atol=1e-10)
        for count in (1, 2):  # the first heads alone, on both paths
            assert torch.allclose(heads(h[row], count=count), out[row, :count], atol=1e-10)
    assert torch.allclose(heads(h, count=2), out[:, :2], atol=1e-10)
    with pytest.raises(ValueError, match="count"):
        heads(h, count=4)
    with pytest.raises(ValueError, match="residual block"):
        MedusaHeads(3, 6, 5, 0)


def test_root_heads_read_the_embedding_of_the_root() -> None:
    """Heads with `root` see h + E[root]: zero E at first (plain Medusa heads), then each
    root moves every head's input by its own embedding row; an int root (decoding) and a
    tensor of roots (training) agree, and a missing root is an error."""
    torch.manual_seed(0)
    plain, heads = MedusaHeads(2, 6, 5, 2).double(), MedusaHeads(2, 6, 5, 2, root=True).double()
    heads.load_state_dict(plain.state_dict(), strict=False)
    h, roots = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 3, 3, 1])
    assert torch.equal(heads(h, roots), plain(h))  # E starts at zero
    with torch.no_grad():
        heads.root_embed.weight.normal_()  # type: ignore[union-attr]
    e = heads.root_embed.weight  # type: ignore[union-attr]
    assert torch.allclose(heads(h, roots), plain(h + e[roots]), atol=1e-12)
    assert torch.allclose(heads(h[1], 3), heads(h, roots)[1], atol=1e-12)
    with pytest.raises(ValueError, match="root"):
        heads(h)


def test_path_heads_by_hand() -> None:
    """Heads that read the path (Hydra-style): head k at row i of a sequence z sees
    h_i + E[z_i] + sum_{j<k} E_j[z_{i+j}] (teacher forcing), then its own blocks."""
    torch.manual_seed(0)
    heads = MedusaHeads(3, 6, 5, 2, path=True).double()
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_()
    h, z = torch.randn(2, 7, 6, dtype=torch.float64), torch.randint(5, (2, 7))
    out = heads(h, z)  # (2, 7, 3, 5)
    e, paths = heads.root_embed.weight, heads.path_embed  # type: ignore[union-attr]
    for b in range(2):
        for i in range(7):
            x = h[b, i] + e[z[b, i]]
            for k in range(1, min(3, 6 - i) + 1):  # the heads with a target, z_{i+k}
                if k > 1:
                    x = x + paths[k - 2][z[b, i + k - 1]]
                assert torch.allclose(out[b, i, k - 1], heads.head(k, x), atol=1e-10)
    with pytest.raises(ValueError, match="token sequence"):
        heads(h[0, 0], 3)  # decoding drafts a tree instead


def test_path_heads_draft_each_node_after_its_own_path() -> None:
    """`draft_tree` gives every node of a tree the rank-r token of its head evaluated after
    the tokens of that node's path (checked node by node), and for heads that do not read
    the path it is the usual top-k gather."""
    net = tiny_net(grid=(3, 4))
    tree = Tree.from_paths([(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (1, 0, 1)])
    h = torch.randn(net.cfg.dim, dtype=torch.float64)
    for path in (False, True):
        heads = tiny_heads(net, path=path, root=True)
        tokens = heads.draft_tree(h, 2, tree).tolist()
        assert tokens[0] == 2
        for node, ranks in enumerate(tree.paths, start=1):
            x, z = h + heads.root_embed.weight[2], []  # type: ignore[union-attr]
            for d, r in enumerate(ranks, start=1):
                if path and d > 1:
                    x = x + heads.path_embed[d - 2][z[-1]]  # type: ignore[index]
                logits = heads.head(d, x) if path else heads(h, 2)[d - 1]
                z.append(int(torch.argsort(logits, descending=True)[r]))
            assert tokens[node] == z[-1]


@pytest.mark.parametrize(
    ("tree", "layers", "root", "path"),
    [(Tree.full((3, 2, 2)), 1, False, False), (Tree.chain(3), 1, False, False),
     (Tree.full((2,)), 1, False, False), (Tree.full((3, 2, 2)), 2, True, False),
     (Tree.full((3, 2, 2)), 2, True, True), (Tree.chain(3), 1, False, True)],
)  # fmt: skip
def test_greedy_medusa_equals_greedy_decoding(
    tree: Tree, layers: int, root: bool, path: bool
) -> None:
    net = tiny_net(grid=(3, 4), sharpen=10.0)
    heads = tiny_heads(net, layers=layers, root=root, path=path)
    greedy = TokenSampling(0.0)
    g = torch.Generator().manual_seed(0)
    accepted = []
    for i in range(12):
        label = torch.tensor(i % 2)
        prefix = torch.randint(5, (i % 4,), generator=g) if i % 4 else None
        batch = None if prefix is None else prefix[None]
        plain, plain_stats = plain_decode(net, 1, label.view(1), prefix=batch, sampling=greedy)
        codes, stats = medusa_decode(net, heads, tree, label, prefix=prefix, sampling=greedy)
        assert codes.tolist() == plain[0].tolist()
        # each pass keeps its root and accepted candidates; a last root may need no pass
        assert stats.tokens == plain_stats.tokens
        assert stats.tokens - 1 <= sum(stats.accepted) <= stats.tokens
        assert stats.forwards == 1 + len(stats.accepted) <= plain_stats.forwards
        accepted += stats.accepted
    assert max(accepted) > 1  # the heads' candidates were accepted, not only the root


def test_typical_acceptance_samples_valid_sequences() -> None:
    net = tiny_net(grid=(3, 4))
    heads = tiny_heads(net)
    g = torch.Generator().manual_seed(1)

    def typical(eps: float, delta: float):
        return medusa_decode(net, heads, Tree.full((2, 2)), None, generator=g,
                             sampling=TokenSampling(1.0), typical=(eps, delta))  # fmt: skip

    codes, _ = typical(0.09, 0.3)
    assert codes.shape == (12,) and 0 <= int(codes.min()) and int(codes.max()) < 5
    # a threshold of 1 accepts no candidate: one token per forward pass, like plain decoding
    _, stats = typical(1.0, 10.0)
    assert stats.accepted == [1] * 11 and stats.forwards == 12
