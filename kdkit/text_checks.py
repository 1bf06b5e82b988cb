"""Checks of the texts a user gives on the command line or to the API (``kdkit predict``, ``kdkit explain``).

This module imports nothing but :mod:`kdkit.errors` (:mod:`kdkit.inference` runs without torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdkit.errors import DataError


def check_text_encoding(texts: Sequence[Any], pairs: Sequence[Any] | None = None) -> None:
    """Every text must be valid Unicode: a command-line argument that was not UTF-8 reaches Python with its bad
    bytes as lone surrogates (``\\udcff``), which tokenizers refuse with a TypeError."""
    for number, text in enumerate([*texts, *(pairs or ())], start=1):
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
            raise DataError(
                f"text {number} is not valid UTF-8 ({byte} at character {exc.start + 1})",
                "give UTF-8 text (set your terminal or locale to UTF-8, e.g. LANG=C.UTF-8)",
            ) from None
