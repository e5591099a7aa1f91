"""The prior Transformer: KV-cached decoding gives the uncached logits, attention is causal,
and one pass over a tree of candidates with the tree attention mask gives, at every node,
the logits of a plain forward pass over that node's own path."""

from __future__ import annotations

import pytest
import torch
from tokens.tiny import tiny_net

from genlab.tokens.medusa import Tree, start_decoding, verify


def _cached_logits(net, codes, labels, prefix: int) -> torch.Tensor:
    """Logits (B, L - prefix, K) of codes prefix..L-1: a prefill of the start token and
    `prefix` codes, then one cached step per code."""
    b, length = codes.shape
    cache, hidden = net.prefill(labels, codes[:, :prefix] if prefix else None, b, length)
    steps = [net.logits(hidden)]
    for i in range(prefix + 1, length):
        h = net(codes[:, i - 1 : i], torch.tensor([i]), cache=cache)  # (B, 1, D)
        cache.advance(1)
        steps.append(net.logits(h[:, -1]))
    return torch.stack(steps, 1)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "sinusoidal-2d"])
@pytest.mark.parametrize("prefix", [0, 2])
def test_kv_cached_logits_equal_the_uncached_prior(positions: str, prefix: int) -> None:
    net = tiny_net(positions)
    codes = torch.randint(5, (4, 6), generator=torch.Generator().manual_seed(0))
    for labels in (None, torch.tensor([0, 1, 1, 0])):
        full = net.logits(net.teacher_forced(codes, labels))  # (B, L, K)
        cached = _cached_logits(net, codes, labels, prefix)
        assert torch.allclose(cached, full[:, prefix:], atol=1e-10, rtol=0)


def test_attention_is_causal() -> None:
    net = tiny_net()
    codes = torch.randint(5, (2, 6), generator=torch.Generator().manual_seed(1))
    base = net.logits(net.teacher_forced(codes, None))
    for i in range(6):
        changed = codes.clone()
        changed[:, i:] = (changed[:, i:] + 1) % 5
        logits = net.logits(net.teacher_forced(changed, None))
        # row j predicts z_j from z_<j: rows up to i see no change, the next one does
        assert torch.allclose(logits[:, : i + 1], base[:, : i + 1], atol=1e-12, rtol=0)
        if i < 5:
            assert not torch.allclose(logits[:, i + 1], base[:, i + 1])


def _path(tree: Tree, node: int) -> list[int]:
    """Input indices from the root to `node` (inclusive)."""
    path = [node]
    while path[-1] != 0:
        path.append(int(tree.parent[path[-1]]))
    return path[::-1]


def test_tree_attention_equals_a_forward_pass_per_candidate() -> None:
    net = tiny_net(grid=(3, 4))
    tree = Tree.full((3, 2, 1))  # 3 + 6 + 6 candidates under the root
    prefix = torch.tensor([2, 0, 4])
    label = torch.tensor(1)
    state = start_decoding(net, label, prefix, tree.size)
    tokens = torch.randint(5, (tree.size,), generator=torch.Generator().manual_seed(2))
    hidden, logits = verify(net, state, tokens, tree.depth, tree.mask)  # (T, D), (T, K)
    for node in range(tree.size):
        seq = torch.cat([prefix, tokens[_path(tree, node)]])[None]  # (1, P + depth + 1)
        inputs = torch.cat([net.start(label.view(1), 1), seq], 1)
        brute = net(inputs, torch.arange(inputs.shape[1]))[0, -1]  # (D,)
        assert torch.allclose(hidden[node], brute, atol=1e-10, rtol=0), node
    # keeping one path leaves the cache of that sequence: the next step is a plain pass
    path = torch.tensor(_path(tree, tree.size - 1))
    state.cache.keep(path)
    seq = torch.cat([prefix, tokens[path]])
    nxt = torch.tensor([[3]])
    h = net(nxt, torch.tensor([state.cache.length]), cache=state.cache)[0, -1]
    inputs = torch.cat([net.start(label.view(1), 1), seq[None], nxt], 1)
    assert torch.allclose(h, net(inputs, torch.arange(inputs.shape[1]))[0, -1], atol=1e-10)


def test_cache_overflow_and_long_prefix_are_refused() -> None:
    net = tiny_net()
    cache, _ = net.prefill(None, None, 1, 2)
    net(torch.tensor([[1]]), torch.tensor([1]), cache=cache)
    cache.advance(1)
    with pytest.raises(ValueError, match="overflow"):
        net(torch.tensor([[1]]), torch.tensor([2]), cache=cache)
    with pytest.raises(ValueError, match="prefix"):
        net.prefill(None, torch.zeros(1, 6, dtype=torch.long), 1, 8)
