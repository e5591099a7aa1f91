"""A cache of text embeddings: the encoder runs once per distinct text.

`EmbeddingStore` maps texts to their `TextEmbedding` under one encoder and `max_length`.
A text it has not seen is encoded (the encoder is loaded on the first miss only) and, when
the store has a file, written there: a safetensors file holding every token state back to
back, the token counts and the pooled vectors, with the texts, the encoder's name and
`max_length` in its metadata. A run keeps one in its directory, so its training captions,
the empty prompt and every prompt it was asked for are encoded once and later sampling
needs no encoder for them. The file is replaced atomically; a file written for another
encoder or `max_length`, or one that cannot be read, is ignored and rebuilt (it only ever
holds what the encoder can recompute).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from genlab.nets.context import Context
from genlab.text.encoder import TextEmbedding, encoder_spec, load_encoder
from genlab.text.table import CaptionTable

__all__ = ["EmbeddingStore"]


class EmbeddingStore:
    """Embeddings of texts by encoder `encoder` truncated at `max_length` tokens, in memory
    and (with `path`) in a safetensors file."""

    def __init__(self, encoder: str, max_length: int, path: Path | str | None = None) -> None:
        self.spec = encoder_spec(encoder)
        self.max_length = max_length
        self.path = None if path is None else Path(path)
        self.entries: dict[str, TextEmbedding] = {}
        self.encoded = 0  # texts this store sent through the encoder
        if self.path is not None and self.path.is_file():
            self.entries = self._read(self.path)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def _metadata(self) -> dict[str, str]:
        return {"encoder": self.spec.name, "max_length": str(self.max_length)}

    def _read(self, path: Path) -> dict[str, TextEmbedding]:
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                texts = json.loads(meta.get("texts", "[]"))
                tokens, lengths, pooled = (f.get_tensor(k) for k in ("tokens", "lengths", "pooled"))
        except (OSError, SafetensorError, ValueError, KeyError):
            return {}
        ours = all(meta.get(k) == v for k, v in self._metadata().items())
        shapes_fit = len(texts) == lengths.shape[0] == pooled.shape[0] and tokens.shape[0] == int(
            lengths.sum()
        )
        if not (ours and shapes_fit):
            return {}
        parts = torch.split(tokens, lengths.tolist())
        return {t: TextEmbedding(p, v) for t, p, v in zip(texts, parts, pooled, strict=True)}

    def _write(self) -> None:
        from genlab.train.checkpoint import atomic_write

        assert self.path is not None
        texts = list(self.entries)
        embs = [self.entries[t] for t in texts]
        tensors = {
            "tokens": torch.cat([e.tokens for e in embs]).contiguous(),  # (T, D)
            "lengths": torch.tensor([e.tokens.shape[0] for e in embs]),  # (K,)
            "pooled": torch.stack([e.pooled for e in embs]).contiguous(),  # (K, D)
        }
        meta = {**self._metadata(), "texts": json.dumps(texts)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, save(tensors, metadata=meta))

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct texts of `texts` not stored yet, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if t not in self.entries]

    def embed(self, texts: Sequence[str]) -> list[TextEmbedding]:
        """The embeddings of `texts`; missing ones are encoded in one pass and stored."""
        new = self.missing(texts)
        if new:
            encoder = load_encoder(self.spec.name, self.max_length)
            self.entries.update(zip(new, encoder.encode(new), strict=True))
            self.encoded += len(new)
            if self.path is not None:
                self._write()
        return [self.entries[t] for t in texts]

    def context(self, texts: Sequence[str]) -> Context:
        """The padded batch of `texts` as a `Context` (B = len(texts))."""
        if not texts:
            raise ValueError("no texts to encode")
        table = CaptionTable(self.embed(texts))
        return table.context(torch.arange(len(texts)))

    def table(self, groups: Sequence[Sequence[str]]) -> CaptionTable:
        """A `CaptionTable` of the distinct texts of `groups`, grouped as given."""
        texts = list(dict.fromkeys(t for g in groups for t in g))
        index = {t: k for k, t in enumerate(texts)}
        return CaptionTable(self.embed(texts), [[index[t] for t in g] for g in groups])
