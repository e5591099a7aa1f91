"""Helpers shared by the text tests: fake embeddings (no encoder), a blocked network, tiny
text-conditioned networks and configs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from genlab.nets.context import Context
from genlab.text.encoder import TextEmbedding

DIM = 6  # width of the fake embeddings


def fake_embeddings(lengths: list[int], dim: int = DIM, seed: int = 0) -> list[TextEmbedding]:
    """Random embeddings of texts with the given token counts."""
    g = torch.Generator().manual_seed(seed)
    return [TextEmbedding(torch.randn(n, dim, generator=g), torch.randn(dim, generator=g))
            for n in lengths]  # fmt: skip


def random_context(lengths: list[int], dim: int = DIM, seed: int = 0) -> Context:
    """A padded batch with rows of the given lengths (padding holds random values, so a
    test sees whether anything reads it)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    tokens = torch.randn(len(lengths), width, dim, generator=g)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return Context(tokens, mask, torch.randn(len(lengths), dim, generator=g))


@contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to open a socket or resolve a name raises."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted in a test that forbids it")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "socket", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield
