"""Helpers for testing kdkit plugins (and kdkit itself): tiny models, tokenizers and data.

Everything here builds small, randomly initialised models in memory, so tests need no download.
"""

from kdkit.testing.models import (
    TINY_WORDS,
    save_tiny_classifier,
    tiny_classifier,
    tiny_config,
    tiny_tokenizer,
    write_tiny_csv,
)

__all__ = [
    "TINY_WORDS",
    "save_tiny_classifier",
    "tiny_classifier",
    "tiny_config",
    "tiny_tokenizer",
    "write_tiny_csv",
]
