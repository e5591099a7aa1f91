"""The text side of a run: its embedding cache, the caption condition it trains on, and the
prompts it is sampled and evaluated with.

A text-conditioned run keeps the embeddings of every text it met in
`RUN/text/embeddings.safetensors` (`genlab.text.store.EmbeddingStore`): its training
captions, the empty prompt and its evaluation prompts are encoded once, before training,
and each new prompt of `genlab generate` once, so sampling a run with a prompt it has seen
loads no text encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from genlab.config import RunConfig
from genlab.errors import ConfigError, DataError
from genlab.nets.context import Context
from genlab.runs.data import Data, test_labels
from genlab.text.store import EmbeddingStore
from genlab.text.table import Captions

__all__ = ["STORE_FILE", "caption_conditions", "eval_prompts", "prompt_conditions",
           "run_store"]  # fmt: skip

STORE_FILE = Path("text") / "embeddings.safetensors"


def run_store(cfg: RunConfig, run_dir: Path | str) -> EmbeddingStore:
    """The embedding cache of a text-conditioned run (its `[text]` encoder and max_length)."""
    if cfg.text is None:
        raise ConfigError("the run is not text-conditioned (no data.captions / [text])")
    return EmbeddingStore(cfg.text.encoder, cfg.text.max_length, Path(run_dir) / STORE_FILE)


def caption_conditions(
    cfg: RunConfig, data: Data, run_dir: Path | str, *groups: Tensor | None
) -> list[Captions | None]:
    """The caption group ids `groups` (train, validation, ...) as `Captions` over one table
    of the run's caption set; the evaluation prompts are encoded into the cache too."""
    if data.captions is None:
        raise DataError("the data set has no captions (data.captions)")
    store = run_store(cfg, run_dir)
    store.embed([*data.captions.texts(), *(data.test_prompts or ())])  # one encoder pass
    table = store.table(data.captions.groups)
    return [None if g is None else Captions(g, table) for g in groups]


def eval_prompts(data: Data, n: int) -> tuple[list[str], Tensor | None]:
    """n evaluation prompts (the test split's, cycled) and, for captioned digits, the digit
    each prompt asks for."""
    if not data.test_prompts:
        raise DataError("the data set has no test prompts (data.captions)")
    prompts = [data.test_prompts[i % len(data.test_prompts)] for i in range(n)]
    return prompts, None if data.test_labels is None else test_labels(data, n)


def prompt_conditions(
    store: EmbeddingStore,
    prompts: Sequence[str],
    *,
    guidance: float | None = None,
    negative: str | None = None,
) -> tuple[Context, Context | None]:
    """(cond, uncond) for sampling one image per prompt: the prompts' context and, with
    guidance, the unconditional branch's: the negative prompt, else the empty prompt (what
    caption dropout trained). Every text goes through the run's cache."""
    if negative is not None and guidance is None:
        raise ConfigError("--negative: a negative prompt needs --guidance (it replaces the "
                          "empty prompt of classifier-free guidance)")  # fmt: skip
    unconditional = "" if negative is None else negative
    texts = list(prompts) + ([unconditional] if guidance is not None else [])
    both = store.context(texts)  # one pass: at most one encoder load
    cond = both[: len(prompts)]
    uncond = both[len(prompts) :] if guidance is not None else None
    return cond.trimmed(), None if uncond is None else uncond.trimmed()
