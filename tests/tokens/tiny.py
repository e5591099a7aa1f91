"""Small random priors for the token tests, in float64 so that comparisons are exact up to
rounding: a Transformer over a 2 x 3 grid of 5 codes with 2 classes, and Medusa heads."""

from __future__ import annotations

import torch

from genlab.tokens.medusa import MedusaHeads
from genlab.tokens.transformer import PriorTransformer, TransformerConfig


def tiny_net(
    positions: str = "learned",
    *,
    vocab: int = 5,
    grid: tuple[int, int] = (2, 3),
    num_classes: int = 2,
    sharpen: float = 40.0,
    depth: int = 2,
    seed: int = 0,
) -> PriorTransformer:
    """A random prior whose output projection is scaled by `sharpen`, so that its
    conditionals are far from uniform (a fresh N(0, 0.02) network is nearly uniform)."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        vocab=vocab,
        grid=grid,
        num_classes=num_classes,
        dim=16,
        depth=depth,
        heads=2,
        positions=positions,
    )
    net = PriorTransformer(cfg).double().eval().requires_grad_(False)
    with torch.no_grad():
        net.head.weight.mul_(sharpen)
    return net


def tiny_heads(
    net: PriorTransformer,
    n_heads: int = 3,
    *,
    seed: int = 1,
    layers: int = 1,
    root: bool = False,
    path: bool = False,
) -> MedusaHeads:
    """Random Medusa heads (non-zero residual blocks, root and path embeddings) over `net`."""
    torch.manual_seed(seed)
    heads = MedusaHeads(n_heads, net.cfg.dim, net.cfg.vocab, layers, root, path)
    heads = heads.double().requires_grad_(False)
    with torch.no_grad():
        heads.copy_projection(net.head.weight)
        heads.res_weight.normal_(std=0.5)
        if layers > 1:
            heads.more_weight.normal_(std=0.5)
        if heads.root_embed is not None:
            heads.root_embed.weight.normal_()
        if heads.path_embed is not None:
            heads.path_embed.normal_()
    return heads
