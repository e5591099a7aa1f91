"""The frozen text encoder: loaded from the package's files with the network blocked, equal
to a reference computed by transformers (and sentence-transformers) directly, and cached so
that it runs once per distinct text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from text_helpers import no_network

from genlab.errors import ConfigError
from genlab.text import encoder as encoder_module
from genlab.text.encoder import ENCODERS, TextEncoder
from genlab.text.store import EmbeddingStore

NAME = "all-MiniLM-L6-v2"
TEXTS = ["a handwritten seven", "", "the number 7 in handwriting, drawn by hand", "8"]


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    """Loaded with every socket refused: nothing may come from the network."""
    with no_network():
        return TextEncoder(ENCODERS[NAME], max_length=32)


def test_loads_offline_and_matches_transformers(encoder: TextEncoder) -> None:
    from transformers import AutoModel, AutoTokenizer

    directory = ENCODERS[NAME].model_dir()
    with no_network():
        tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
        got = encoder.encode(TEXTS)
    for text, emb in zip(TEXTS, got, strict=True):
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            ref = model(**ids).last_hidden_state[0]  # (L, 384), one text: no padding
        assert emb.tokens.shape == ref.shape == (ids["input_ids"].shape[1], 384)
        torch.testing.assert_close(emb.tokens, ref, rtol=1e-5, atol=1e-5)
        mean = ref.mean(0)  # mean pooling over the real tokens (Reimers & Gurevych 2019)
        torch.testing.assert_close(emb.pooled, mean / mean.norm(), rtol=1e-5, atol=1e-6)
    assert ENCODERS[NAME].dim == 384
    assert not any(p.requires_grad for p in encoder.model.parameters())


def test_pooled_vector_is_the_sentence_transformers_embedding(encoder: TextEncoder) -> None:
    """The package's own pipeline (Transformer -> mean Pooling -> Normalize) gives the same
    sentence vector."""
    from sentence_transformers import SentenceTransformer

    with no_network():
        st = SentenceTransformer(str(ENCODERS[NAME].model_dir()), device="cpu")
    ref = torch.as_tensor(st.encode(TEXTS, convert_to_numpy=True))  # (4, 384)
    got = torch.stack([e.pooled for e in encoder.encode(TEXTS)])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_batching_and_truncation(encoder: TextEncoder) -> None:
    """Padding a batch changes no text's states; max_length truncates to that many tokens."""
    alone = [encoder.encode([t])[0] for t in TEXTS]
    batched = encoder.encode(TEXTS, batch_size=3)
    for a, b in zip(alone, batched, strict=True):
        torch.testing.assert_close(a.tokens, b.tokens, rtol=1e-5, atol=1e-5)
    short = TextEncoder(ENCODERS[NAME], max_length=4).encode([TEXTS[2]])[0]
    assert short.tokens.shape[0] == 4  # [CLS] + 2 word pieces + [SEP]
    with pytest.raises(ConfigError, match="text.max_length"):
        TextEncoder(ENCODERS[NAME], max_length=513)


def test_store_encodes_each_text_once(
    encoder: TextEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def counting(name: str, max_length: int) -> TextEncoder:
        class Counting:
            def encode(self, texts: list[str]) -> list:
                calls.append(list(texts))
                return encoder.encode(texts)

        return Counting()  # type: ignore[return-value]

    monkeypatch.setattr("genlab.text.store.load_encoder", counting)
    path = tmp_path / "emb.safetensors"
    store = EmbeddingStore(NAME, 32, path)
    first = store.context(["a 3", "a 3", "a 4"])
    store.context(["a 4", "a 3"])
    assert calls == [["a 3", "a 4"]]  # one pass over the distinct new texts
    assert torch.equal(first.tokens[0], first.tokens[1])

    def refuse(name: str, max_length: int) -> TextEncoder:
        raise AssertionError("the encoder was loaded for cached texts")

    monkeypatch.setattr("genlab.text.store.load_encoder", refuse)
    again = EmbeddingStore(NAME, 32, path).context(["a 3", "a 3", "a 4"])  # from the file
    assert torch.equal(again.tokens, first.tokens) and torch.equal(again.mask, first.mask)
    assert EmbeddingStore(NAME, 16, path).missing(["a 3"]) == ["a 3"]  # other max_length
    path.write_bytes(b"not safetensors")
    assert EmbeddingStore(NAME, 32, path).missing(["a 3"]) == ["a 3"]  # unreadable: rebuilt


def test_missing_package_is_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(encoder_module.importlib, "import_module", absent)
    with pytest.raises(ConfigError, match=r"genlab\[text\]"):
        ENCODERS[NAME].model_dir()
